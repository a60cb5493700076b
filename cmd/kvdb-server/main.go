// Command kvdb-server runs one KVDB node.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/kvdb/kvdb/internal/raftnode"
	"github.com/kvdb/kvdb/internal/service"
	"github.com/kvdb/kvdb/internal/watch"
)

// Build information, set by `make build` and the Docker image with
// -ldflags "-X main.version=... -X main.commit=... -X main.buildDate=...".
var (
	version   = "dev"
	commit    = "unknown"
	buildDate = "unknown"
)

// versionString is what -version prints.
func versionString() string {
	return fmt.Sprintf("kvdb-server %s (commit %s, built %s, %s)", version, commit, buildDate, runtime.Version())
}

// shutdownTimeout bounds how long in-flight requests may take to finish.
const shutdownTimeout = 10 * time.Second

// Exit statuses (README, "Exit status").
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	exitNoSpace = 3 // the data dir's file system is full at start-up
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "kvdb-server: %v\nRun 'kvdb-server -help' for the flags.\n", err)
		return exitUsage
	}
	if cfg.ShowVersion {
		fmt.Fprintln(stdout, versionString())
		return 0
	}
	log := newLogger(cfg, stderr)
	id := service.MemberID(cfg.NodeID)
	sec := &cfg.Security
	self := raftnode.Member{ID: id, Name: cfg.NodeID, Address: cfg.Advertise, PeerAddress: sec.AdvertisePeer}
	members := []raftnode.Member{self}
	for _, p := range cfg.Peers {
		members = append(members, raftnode.Member{ID: service.MemberID(p.ID), Name: p.ID, Address: p.Address, PeerAddress: p.PeerAddress})
	}
	ids := make([]uint64, len(members))
	for i, m := range members {
		ids[i] = m.ID
	}
	raftCfg := raftnode.Config{
		Peers:          members,
		SyncWrites:     cfg.SyncWrites,
		SyncInterval:   cfg.SyncInterval,
		TickInterval:   cfg.HeartbeatInterval,
		ElectionTicks:  cfg.ElectionTicks,
		SnapshotCount:  cfg.SnapshotCount,
		DiskReserve:    cfg.DiskReserve,
		WALSegmentSize: cfg.WALSegmentSize,
		Standalone:     !cfg.EnableRaft,
	}
	// Ports first: a start that fails must not touch the data dir.
	lis, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		log.Error("cannot listen", "address", cfg.Address, "err", err)
		return exitFailed
	}
	var metricsLis, peerLis, respLis net.Listener
	closeListeners := func() {
		for _, l := range []net.Listener{lis, metricsLis, peerLis, respLis} {
			if l != nil {
				l.Close()
			}
		}
	}
	if cfg.MetricsAddress != "" {
		if metricsLis, err = net.Listen("tcp", cfg.MetricsAddress); err != nil {
			log.Error("cannot listen", "metrics_address", cfg.MetricsAddress, "err", err)
			closeListeners()
			return exitFailed
		}
	}
	if cfg.RESPAddress != "" {
		if respLis, err = net.Listen("tcp", cfg.RESPAddress); err != nil {
			log.Error("cannot listen", "resp_address", cfg.RESPAddress, "err", err)
			closeListeners()
			return exitFailed
		}
	}
	if sec.PeerAddress != "" {
		if peerLis, err = net.Listen("tcp", sec.PeerAddress); err != nil {
			log.Error("cannot listen", "peer_address", sec.PeerAddress, "err", err)
			closeListeners()
			return exitFailed
		}
	}
	sec.warn(log, cfg.EnableRaft)
	hasState := raftnode.HasState(cfg.DataDir)
	clusterID := configuredClusterID(ids, sec.InitialClusterToken, hasState)
	if hasState && (len(cfg.Peers) > 0 || cfg.Join != "") {
		log.Info("data dir holds state: membership comes from it, -peers and -join are ignored", "data_dir", cfg.DataDir)
	}
	if cfg.Join != "" && !hasState {
		user, password, err := joinCredentials(cfg.JoinUser, cfg.JoinPasswordFile)
		if err != nil {
			log.Error("cannot join the cluster", "via", cfg.Join, "err", err)
			closeListeners()
			return exitFailed
		}
		joined, cid, err := joinCluster(context.Background(), log, cfg.Join, self, sec.joinTLS, user, password)
		if err != nil {
			log.Error("cannot join the cluster", "via", cfg.Join, "err", err)
			closeListeners()
			return exitFailed
		}
		raftCfg.Peers, raftCfg.Join, raftCfg.JoinMembers, clusterID = nil, true, joined, cid
		log.Info("added to the cluster; waiting for the leader to send the log", "members", len(joined))
	}
	srv, err := service.New(service.Config{
		NodeID:                cfg.NodeID,
		MemberID:              id,
		ClusterID:             clusterID,
		AdvertiseAddress:      cfg.Advertise,
		AdvertisePeerAddress:  sec.AdvertisePeer,
		ClientAddress:         cfg.AdvertiseClient,
		TLS:                   sec.clientTLS,
		Peer:                  sec.peerConfig(cfg.EnableRaft),
		ProtectedMode:         sec.ProtectedMode,
		Address:               cfg.Address,
		DataDir:               cfg.DataDir,
		MaxMemory:             cfg.MaxMemory,
		EvictionPolicy:        cfg.EvictionPolicy,
		Version:               version,
		Limits:                cfg.Limits,
		RequestTimeout:        cfg.RequestTimeout,
		TxnIdleTimeout:        cfg.TxnTimeout,
		AuthTokenTTL:          cfg.AuthTokenTTL,
		MaxTxns:               cfg.MaxTxns,
		MaxInFlightRequests:   cfg.MaxInFlight,
		EnableMetrics:         cfg.EnableMetrics,
		EnablePprof:           cfg.EnablePprof,
		Logger:                log,
		ProtocolDetectTimeout: cfg.DetectTimeout,
		MaxConnections:        cfg.MaxConnections,
		MaxAnonymousCalls:     cfg.MaxAnonymousCalls,
		Binary:                service.BinaryConfig{MaxRequestBuffer: int(cfg.MaxRequestBuffer)},
		EventLoops:            cfg.EventLoops,
		Raft:                  raftCfg,
		WatchHistory:          watch.Config{HistoryRevisions: cfg.WatchHistoryRevisions, HistoryBytes: cfg.WatchHistoryBytes},
	})
	if err != nil {
		closeListeners()
		if raftnode.IsNoSpace(err) {
			log.Error("cannot start: no space left on device in the data dir; free some space and start again",
				"data_dir", cfg.DataDir, "err", err)
			return exitNoSpace
		}
		log.Error("cannot start node", "err", err)
		return exitFailed
	}
	mode := "standalone"
	if cfg.EnableRaft {
		mode = "raft"
	}
	log.Info("kvdb-server started", "node_id", cfg.NodeID, "member_id", fmt.Sprintf("%x", id),
		"address", lis.Addr().String(), "advertise", cfg.Advertise, "advertise_client", cfg.AdvertiseClient, "data_dir", cfg.DataDir, "mode", mode,
		"tls", sec.clientTLS != nil, "protected_mode", sec.ProtectedMode && sec.clientTLS == nil, "sync_writes", cfg.SyncWrites, "max_memory", cfg.MaxMemory, "eviction_policy", cfg.EvictionPolicy, "version", version)

	sigC := make(chan os.Signal, 1)
	signal.Notify(sigC, syscall.SIGINT, syscall.SIGTERM)
	serveErr := make(chan error, 3)
	go func() { serveErr <- srv.Serve(lis) }()
	if peerLis != nil {
		log.Info("serving peers", "peer_address", peerLis.Addr().String(), "advertise_peer", sec.AdvertisePeer,
			"peer_tls", sec.peerServerTLS != nil, "peer_client_cert_auth", sec.PeerClientCertAuth)
		go func() {
			if err := srv.ServePeers(peerLis); err != nil {
				serveErr <- err
			}
		}()
	}
	if respLis != nil {
		log.Info("serving the Redis protocol", "resp_address", respLis.Addr().String())
		go func() {
			if err := srv.ServeRESP(respLis); err != nil {
				serveErr <- err
			}
		}()
	}
	if metricsLis != nil {
		log.Info("serving metrics", "metrics_address", metricsLis.Addr().String())
		go func() {
			if err := srv.ServeMetrics(metricsLis); err != nil {
				serveErr <- err
			}
		}()
	}

	code := 0
	select {
	case sig := <-sigC:
		log.Info("shutting down", "signal", sig.String())
	case err := <-serveErr:
		if err != nil {
			log.Error("serving failed", "err", err)
			code = exitFailed
		}
	case <-srv.Node().Done():
		if srv.Node().Removed() {
			log.Warn("this member was removed from the cluster; exiting")
		} else {
			log.Error("raft node stopped unexpectedly")
			code = exitFailed
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, raftnode.ErrRemoved) {
		log.Error("shutdown", "err", err)
		code = exitFailed
	}
	if code == 0 {
		log.Info("stopped cleanly")
	}
	return code
}
