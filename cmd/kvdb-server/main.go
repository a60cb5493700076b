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
	"syscall"
	"time"

	"github.com/kvdb/kvdb/internal/raftnode"
	"github.com/kvdb/kvdb/internal/service"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// shutdownTimeout bounds how long in-flight requests may take to finish.
const shutdownTimeout = 10 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
}

func run(args []string, getenv func(string) string, stderr io.Writer) int {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "kvdb-server: %v\n", err)
		return 2
	}
	if cfg.ShowVersion {
		fmt.Fprintln(os.Stdout, version)
		return 0
	}
	log := newLogger(cfg, stderr)
	id := service.MemberID(cfg.NodeID)
	self := raftnode.Member{ID: id, Name: cfg.NodeID, Address: cfg.Advertise}
	members := []raftnode.Member{self}
	for _, p := range cfg.Peers {
		members = append(members, raftnode.Member{ID: service.MemberID(p.ID), Name: p.ID, Address: p.Address})
	}
	ids := make([]uint64, len(members))
	for i, m := range members {
		ids[i] = m.ID
	}
	raftCfg := raftnode.Config{
		Peers:         members,
		SyncWrites:    cfg.SyncWrites,
		SyncInterval:  cfg.SyncInterval,
		TickInterval:  cfg.HeartbeatInterval,
		ElectionTicks: cfg.ElectionTicks,
		SnapshotCount: cfg.SnapshotCount,
	}
	clusterID := service.ClusterID(ids)
	hasState := raftnode.HasState(cfg.DataDir)
	if hasState && (len(cfg.Peers) > 0 || cfg.Join != "") {
		log.Info("data dir holds state: membership comes from it, -peers and -join are ignored", "data_dir", cfg.DataDir)
	}
	if cfg.Join != "" && !hasState {
		joined, cid, err := joinCluster(context.Background(), log, cfg.Join, cfg.NodeID, cfg.Advertise)
		if err != nil {
			log.Error("cannot join the cluster", "via", cfg.Join, "err", err)
			return 1
		}
		raftCfg.Peers, raftCfg.Join, raftCfg.JoinMembers, clusterID = nil, true, joined, cid
		log.Info("added to the cluster; waiting for the leader to send the log", "members", len(joined))
	}
	srv, err := service.New(service.Config{
		NodeID:                cfg.NodeID,
		MemberID:              id,
		ClusterID:             clusterID,
		AdvertiseAddress:      cfg.Advertise,
		Address:               cfg.Address,
		DataDir:               cfg.DataDir,
		MaxMemory:             cfg.MaxMemory,
		EvictionPolicy:        cfg.EvictionPolicy,
		Version:               version,
		Limits:                cfg.Limits,
		RequestTimeout:        cfg.RequestTimeout,
		TxnIdleTimeout:        cfg.TxnTimeout,
		MaxTxns:               cfg.MaxTxns,
		MaxInFlightRequests:   cfg.MaxInFlight,
		ProtocolDetectTimeout: cfg.DetectTimeout,
		MaxConnections:        cfg.MaxConnections,
		Binary:                service.BinaryConfig{MaxRequestBuffer: int(cfg.MaxRequestBuffer)},
		EnableMetrics:         cfg.EnableMetrics,
		Logger:                log,
		Raft:                  raftCfg,
	})
	if err != nil {
		log.Error("cannot start node", "err", err)
		return 1
	}
	lis, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		log.Error("cannot listen", "address", cfg.Address, "err", err)
		_ = srv.Shutdown(context.Background())
		return 1
	}
	var metricsLis net.Listener
	if cfg.MetricsAddress != "" {
		if metricsLis, err = net.Listen("tcp", cfg.MetricsAddress); err != nil {
			log.Error("cannot listen", "metrics_address", cfg.MetricsAddress, "err", err)
			lis.Close()
			_ = srv.Shutdown(context.Background())
			return 1
		}
	}
	mode := "standalone"
	if cfg.EnableRaft {
		mode = "raft"
	}
	log.Info("kvdb-server started", "node_id", cfg.NodeID, "member_id", fmt.Sprintf("%x", id),
		"address", lis.Addr().String(), "advertise", cfg.Advertise, "data_dir", cfg.DataDir, "mode", mode,
		"sync_writes", cfg.SyncWrites, "max_memory", cfg.MaxMemory, "eviction_policy", cfg.EvictionPolicy, "version", version)

	sigC := make(chan os.Signal, 1)
	signal.Notify(sigC, syscall.SIGINT, syscall.SIGTERM)
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(lis) }()
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
			code = 1
		}
	case <-srv.Node().Done():
		log.Error("raft node stopped unexpectedly")
		code = 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Error("shutdown", "err", err)
		code = 1
	}
	if code == 0 {
		log.Info("stopped cleanly")
	}
	return code
}
