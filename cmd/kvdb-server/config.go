package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/kvdb/kvdb/internal/raftnode"
	"github.com/kvdb/kvdb/internal/service"
	"github.com/kvdb/kvdb/internal/watch"
)

// config is everything kvdb-server reads from flags and the environment.
type config struct {
	NodeID    string
	Address   string
	Peers     []peer
	Advertise string
	Join      string
	// JoinUser and JoinPasswordFile authenticate -join on a cluster with
	// authentication enabled (MemberAdd needs the root role).
	JoinUser, JoinPasswordFile string
	DataDir                    string
	MaxMemory                  int64
	EvictionPolicy             service.EvictionPolicy
	EnableRaft                 bool
	EnableMetrics              bool
	// MetricsAddress, when set, serves /metrics, /healthz and /readyz on a
	// second, HTTP-only listener too.
	MetricsAddress string
	// EnablePprof serves /debug/pprof/ on MetricsAddress.
	EnablePprof bool
	// RESPAddress, when set, serves the Redis protocol (inline commands
	// too) on a listener of its own.
	RESPAddress string
	// EventLoops is service.Config.EventLoops.
	EventLoops     int
	SyncWrites     bool
	DiskReserve    int64
	WALSegmentSize int64

	SyncInterval      time.Duration
	SnapshotCount     uint64
	HeartbeatInterval time.Duration
	ElectionTicks     int
	RequestTimeout    time.Duration
	TxnTimeout        time.Duration
	AuthTokenTTL      time.Duration
	MaxTxns           int
	MaxInFlight       int
	// Connection bounds: -protocol-detect-timeout, -max-connections,
	// -max-request-buffer.
	DetectTimeout    time.Duration
	MaxConnections   int
	MaxRequestBuffer int64
	Limits           service.Limits
	LogFormat        string
	LogLevel         slog.Level
	ShowVersion      bool

	// MaxAnonymousCalls is -max-anonymous-calls.
	MaxAnonymousCalls int

	// AdvertiseClient is where clients reach this node when not at
	// Advertise (a port mapped by Docker).
	AdvertiseClient string

	// WatchHistory bounds the watch history window (-watch-history).
	WatchHistoryRevisions, WatchHistoryBytes int64

	// Security: client TLS, peer authentication, protected mode (security.go).
	Security securityConfig
}

// peer is one -peers entry: "host:port" or "id=host:port", where the
// address may be "client-host:port/peer-host:port" for a member with a peer
// listener of its own (-peer-address).
type peer struct {
	ID          string
	Address     string
	PeerAddress string
}

// envBindings are the environment variables the README lists; a flag
// given on the command line wins over its variable.
var envBindings = map[string]string{
	"node-id":           "NODE_ID",
	"address":           "ADDRESS",
	"peers":             "PEERS",
	"data-dir":          "DATA_DIR",
	"max-memory":        "MAX_MEMORY",
	"eviction-policy":   "EVICTION_POLICY",
	"enable-raft":       "ENABLE_RAFT",
	"enable-metrics":    "ENABLE_METRICS",
	"metrics-address":   "METRICS_ADDRESS",
	"enable-pprof":      "ENABLE_PPROF",
	"resp-address":      "RESP_ADDRESS",
	"sync-writes":       "SYNC_WRITES",
	"advertise-address": "ADVERTISE_ADDRESS",
	"join":              "JOIN",
	"log-format":        "LOG_FORMAT",
	"log-level":         "LOG_LEVEL",
	"watch-history":     "WATCH_HISTORY",

	"advertise-client-address": "ADVERTISE_CLIENT_ADDRESS",
}

// parseConfig parses args (without the program name) with env as the
// environment lookup.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("kvdb-server", flag.ContinueOnError)
	// Parse errors are returned and printed once by run(), with a pointer
	// to -help; only -help prints the flag list.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var (
		c         config
		peers     string
		maxMem    = sizeFlag{}
		keySize   = sizeFlag{}
		valSize   = sizeFlag{}
		reqSize   = sizeFlag{}
		respSize  = sizeFlag{}
		txnSize   = sizeFlag{}
		reserve   = sizeFlag{}
		walSeg    = sizeFlag{}
		reqBuf    = sizeFlag{}
		logLevel  string
		policy    string
		snapCount int64
		history   = historyFlag{revisions: watch.DefaultHistoryRevisions, bytes: watch.DefaultHistoryBytes, text: "2000000,64MiB"}
	)
	d := service.DefaultLimits
	_ = maxMem.Set("1GB")
	_ = keySize.Set(strconv.Itoa(d.MaxKeySize))
	_ = valSize.Set(strconv.Itoa(d.MaxValueSize))
	_ = reqSize.Set(strconv.Itoa(d.MaxRequestSize))
	_ = respSize.Set(strconv.Itoa(d.MaxResponseBytes))
	respSize.text = "4MiB"
	_ = txnSize.Set(strconv.Itoa(d.MaxTxnBytes))
	_ = reserve.Set("16MiB")
	_ = walSeg.Set("64MiB")
	_ = reqBuf.Set(strconv.Itoa(service.DefaultBinaryMaxRequestBuffer))
	keySize.text, valSize.text, reqSize.text, reqBuf.text = "4KiB", "1MiB", "4MiB", "16MiB"

	fs.StringVar(&c.NodeID, "node-id", "", "unique node name (env NODE_ID); defaults to node1 for a standalone node")
	fs.StringVar(&c.Address, "address", ":8080", "listen address for gRPC, HTTP and the binary protocol (env ADDRESS)")
	fs.StringVar(&peers, "peers", "", "comma-separated other members, host:port (the host is the node id) or id=host:port, with /peer-host:port appended for members with a -peer-address (env PEERS); needs -enable-raft")
	fs.StringVar(&c.Advertise, "advertise-address", "", "address peers and clients use to reach this node (env ADVERTISE_ADDRESS); default: -address, with the node id as host when -address has none")
	fs.StringVar(&c.Join, "join", "", "address of a member of a running cluster to join (env JOIN); ignored once the data dir holds state")
	fs.StringVar(&c.JoinUser, "join-user", "", "user -join authenticates as when the cluster has authentication enabled (a root user)")
	fs.StringVar(&c.JoinPasswordFile, "join-password-file", "", "file holding -join-user's password")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "directory for the WAL and snapshots (env DATA_DIR)")
	fs.Var(&maxMem, "max-memory", "memory limit for stored data: 1GB, 512MB, 64KiB or bytes (env MAX_MEMORY)")
	fs.StringVar(&policy, "eviction-policy", string(service.EvictAllKeysLRU), "what happens at -max-memory: allkeys-lru (the leader evicts least recently used keys), volatile-lru, volatile-ttl, allkeys-random, volatile-random (only keys with a TTL, as in Redis) or noeviction (writes fail with RESOURCE_EXHAUSTED) (env EVICTION_POLICY)")
	fs.BoolVar(&c.EnableRaft, "enable-raft", false, "join the peers in -peers as a raft cluster (env ENABLE_RAFT); false runs a standalone node, still logged through raft's WAL")
	fs.BoolVar(&c.EnableMetrics, "enable-metrics", true, "serve Prometheus /metrics on -address (env ENABLE_METRICS)")
	fs.IntVar(&c.EventLoops, "event-loops", 0, "event loops serving the plain-TCP connections of the binary and Redis protocols (Linux): 0 picks one per two processors, -1 gives every connection goroutines of its own (docs/architecture.md)")
	fs.StringVar(&c.RESPAddress, "resp-address", "", "also serve the Redis protocol (RESP2/RESP3, inline commands too) on this address, e.g. 127.0.0.1:6379 (env RESP_ADDRESS); -address serves it too (docs/redis.md)")
	fs.StringVar(&c.MetricsAddress, "metrics-address", "", "also serve /metrics, /healthz and /readyz over plain HTTP on this address, e.g. 127.0.0.1:9100 (env METRICS_ADDRESS); needs -enable-metrics")
	fs.BoolVar(&c.EnablePprof, "enable-pprof", false, "serve Go's /debug/pprof/ profiles on -metrics-address, never on -address (env ENABLE_PPROF); needs -metrics-address")
	fs.BoolVar(&c.SyncWrites, "sync-writes", false, "fsync the WAL before acknowledging writes (env SYNC_WRITES); false fsyncs every -sync-interval")
	fs.Var(&reserve, "disk-reserve", "space held in <data-dir>/space.reserve and freed when the disk fills, so writes in flight finish and reads go on; 0: none")
	fs.Var(&walSeg, "wal-segment-size", "size at which a WAL segment file is closed and the next one started")
	fs.DurationVar(&c.SyncInterval, "sync-interval", raftnode.DefaultSyncInterval, "background fsync interval when -sync-writes=false: the most a machine crash can lose")
	fs.Int64Var(&snapCount, "snapshot-count", raftnode.DefaultSnapshotCount, "applied entries between snapshots (the WAL is compacted after each)")
	fs.DurationVar(&c.HeartbeatInterval, "heartbeat-interval", raftnode.DefaultTickInterval, "raft heartbeat interval (one raft tick)")
	fs.IntVar(&c.ElectionTicks, "election-ticks", raftnode.DefaultElectionTicks, "election timeout in heartbeat intervals")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", service.DefaultRequestTimeout, "deadline for requests that carry none")
	fs.Var(&keySize, "max-key-size", "largest key accepted")
	fs.Var(&valSize, "max-value-size", "largest value accepted")
	fs.IntVar(&c.Limits.MaxBatchOps, "max-batch-ops", d.MaxBatchOps, "most operations in one batch")
	fs.Var(&reqSize, "max-request-size", "largest request accepted")
	fs.Var(&respSize, "max-response-bytes", "keys and values one range or transaction read returns at most (more=true past it, after at least one key)")
	fs.IntVar(&c.Limits.MaxRangeLimit, "max-range-limit", d.MaxRangeLimit, "most keys one range request returns")
	fs.DurationVar(&c.Limits.MaxTTL, "max-ttl", d.MaxTTL, "longest TTL a put or a lease may have")
	fs.IntVar(&c.Limits.MaxLeases, "max-leases", d.MaxLeases, "most leases that may exist at once")
	fs.DurationVar(&c.TxnTimeout, "txn-timeout", service.DefaultTxnIdleTimeout, "discard an interactive transaction idle this long")
	fs.DurationVar(&c.AuthTokenTTL, "auth-token-ttl", 5*time.Minute, "how long a token from Authenticate stays valid (authentication enabled)")
	fs.IntVar(&c.MaxTxns, "max-txns", 10_000, "most interactive transactions open at once on this node")
	fs.IntVar(&c.MaxInFlight, "max-inflight-requests", service.DefaultMaxInFlightRequests, "most KV and transaction requests served at once (both transports); more get RESOURCE_EXHAUSTED at once; -1: no cap")
	fs.DurationVar(&c.DetectTimeout, "protocol-detect-timeout", service.DefaultProtocolDetectTimeout, "close a connection that has not shown which protocol it speaks (binary, gRPC, HTTP/1) within this time")
	fs.IntVar(&c.MaxConnections, "max-connections", service.DefaultMaxConnections, "most open client connections; more are answered with an error in their protocol and closed; -1: no cap")
	fs.IntVar(&c.MaxAnonymousCalls, "max-anonymous-calls", service.DefaultMaxAnonymousCalls, "while authentication is enabled, most gRPC calls without a token (Authenticate, health, reflection) open at once; more get RESOURCE_EXHAUSTED; -1: no cap")
	fs.Var(&reqBuf, "max-request-buffer", "most bytes of large binary-protocol frames buffered at once across connections; a frame that does not fit waits (backpressure); at least one max-size frame always fits")
	fs.IntVar(&c.Limits.MaxTxnOps, "max-txn-ops", d.MaxTxnOps, "most reads, ranges and writes one transaction holds")
	fs.Var(&txnSize, "max-txn-bytes", "most key and value bytes one transaction holds")
	fs.Var(&history, "watch-history", "the watch history window, REVISIONS,SIZE: watches can start from revisions still in it; the oldest leave when it holds more revisions or bytes (env WATCH_HISTORY)")
	fs.IntVar(&c.Limits.MaxWatchesPerStream, "max-watches-per-stream", d.MaxWatchesPerStream, "most watchers open at once on one watch stream")
	fs.IntVar(&c.Limits.MaxWatchStreams, "max-watch-streams", d.MaxWatchStreams, "most watch streams open at once on this node")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json (env LOG_FORMAT)")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error (env LOG_LEVEL)")
	fs.BoolVar(&c.ShowVersion, "version", false, "print the version and exit")
	c.Security.flags(fs)

	// Client addresses (kvdbctl --endpoints, member list).
	fs.StringVar(&c.AdvertiseClient, "advertise-client-address", "", "address clients use to reach this node when it differs from -advertise-address, e.g. the host port Docker maps (env ADVERTISE_CLIENT_ADDRESS); members report it to kvdbctl")

	// Environment first, so that flags parsed next override it.
	fromEnv := map[string]string{}
	for name, env := range envBindings {
		if v := getenv(env); v != "" {
			if err := fs.Set(name, v); err != nil {
				return nil, fmt.Errorf("environment variable %s=%q: %w", env, v, err)
			}
			fromEnv[name] = env
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fmt.Fprintln(stderr, "Usage of kvdb-server (a flag given wins over the environment variable its text names):")
			fs.PrintDefaults()
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	for name := range givenFlags(fs, args) {
		delete(fromEnv, name)
	}
	// source names where a flag's value came from, for error messages.
	source := func(name string) string {
		if env, ok := fromEnv[name]; ok {
			return "environment variable " + env
		}
		return "-" + name
	}
	c.MaxMemory = maxMem.bytes
	policyValue, perr := service.ParseEvictionPolicy(policy)
	if perr != nil {
		return nil, fmt.Errorf("%s: %w", source("eviction-policy"), perr)
	}
	c.EvictionPolicy = policyValue
	if err := checkRanges(c, snapCount, respSize.bytes); err != nil {
		return nil, err
	}
	c.SnapshotCount = uint64(snapCount)
	c.DiskReserve = reserve.bytes
	c.WALSegmentSize = walSeg.bytes
	if c.WALSegmentSize < 4<<10 {
		return nil, errors.New("-wal-segment-size must be at least 4KiB")
	}
	c.Limits.MaxKeySize = int(keySize.bytes)
	c.Limits.MaxValueSize = int(valSize.bytes)
	c.Limits.MaxRequestSize = int(reqSize.bytes)
	c.Limits.MaxResponseBytes = int(respSize.bytes)
	c.Limits.MaxTxnBytes = int(txnSize.bytes)
	c.MaxRequestBuffer = reqBuf.bytes
	if c.Limits.MaxTTL <= 0 {
		return nil, errors.New("-max-ttl must be positive")
	}
	if c.Limits.MaxLeases <= 0 {
		return nil, errors.New("-max-leases must be positive")
	}
	c.WatchHistoryRevisions, c.WatchHistoryBytes = history.revisions, history.bytes
	if err := c.Limits.Validate(); err != nil {
		return nil, err
	}
	if err := c.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return nil, fmt.Errorf("%s %q: use debug, info, warn or error", source("log-level"), logLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return nil, fmt.Errorf("%s %q: use text or json", source("log-format"), c.LogFormat)
	}
	var err error
	if c.Peers, err = parsePeers(peers); err != nil {
		return nil, err
	}
	if len(c.Peers) > 0 && !c.EnableRaft {
		return nil, errors.New("-peers needs -enable-raft=true (a node with peers is a raft cluster member)")
	}
	if c.Join != "" && !c.EnableRaft {
		return nil, errors.New("-join needs -enable-raft=true")
	}
	if c.Join != "" && len(c.Peers) > 0 {
		return nil, errors.New("use either -peers (to form a new cluster) or -join (to enter a running one), not both")
	}
	if c.NodeID == "" {
		if c.EnableRaft {
			return nil, errors.New("-node-id is required for a raft cluster member")
		}
		c.NodeID = "node1"
	}
	if c.Advertise == "" {
		host, port, err := splitHostPort(c.Address)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source("address"), err)
		}
		if host == "" || host == "0.0.0.0" || host == "::" || host == "[::]" {
			// Peers reach a node by its name, as in the compose
			// setup where node2 is the host name of the node named node2.
			host = c.NodeID
		}
		c.Advertise = host + ":" + port
	}
	if c.AdvertiseClient != "" {
		if _, _, err := splitHostPort(c.AdvertiseClient); err != nil {
			return nil, fmt.Errorf("%s: %w", source("advertise-client-address"), err)
		}
	}
	var others []peer
	seen := map[string]bool{c.NodeID: true}
	for _, p := range c.Peers {
		if p.ID == c.NodeID {
			continue // the node itself in a shared peer list
		}
		if seen[p.ID] {
			return nil, fmt.Errorf("-peers names %q twice", p.ID)
		}
		seen[p.ID] = true
		others = append(others, p)
	}
	c.Peers = others
	if err := c.Security.check(c.EnableRaft, c.NodeID); err != nil {
		return nil, err
	}
	if c.MetricsAddress != "" {
		if !c.EnableMetrics {
			return nil, errors.New("-metrics-address needs -enable-metrics=true")
		}
		if _, _, err := splitHostPort(c.MetricsAddress); err != nil {
			return nil, fmt.Errorf("%s: %w", source("metrics-address"), err)
		}
	}
	if c.EnablePprof && c.MetricsAddress == "" {
		return nil, errors.New("-enable-pprof needs -metrics-address (profiles are never served on -address)")
	}
	if c.RESPAddress != "" {
		if _, _, err := splitHostPort(c.RESPAddress); err != nil {
			return nil, fmt.Errorf("%s: %w", source("resp-address"), err)
		}
	}
	if c.MaxMemory < 0 {
		return nil, errors.New("-max-memory must not be negative")
	}
	if c.MaxInFlight == 0 || c.MaxInFlight < -1 {
		return nil, errors.New("-max-inflight-requests must be positive, or -1 for no cap")
	}
	if c.AuthTokenTTL <= 0 {
		return nil, errors.New("-auth-token-ttl must be positive")
	}
	if c.MaxConnections == 0 || c.MaxConnections < -1 {
		return nil, errors.New("-max-connections must be positive, or -1 for no cap")
	}
	if c.MaxAnonymousCalls == 0 || c.MaxAnonymousCalls < -1 {
		return nil, errors.New("-max-anonymous-calls must be positive, or -1 for no cap")
	}
	if c.DetectTimeout <= 0 || c.MaxRequestBuffer <= 0 {
		return nil, errors.New("-protocol-detect-timeout and -max-request-buffer must be positive")
	}
	if c.TxnTimeout <= 0 || c.MaxTxns <= 0 || c.Limits.MaxTxnOps <= 0 || c.Limits.MaxTxnBytes <= 0 {
		return nil, errors.New("-txn-timeout, -max-txns, -max-txn-ops and -max-txn-bytes must be positive")
	}
	if c.ElectionTicks <= 1 {
		return nil, errors.New("-election-ticks must be at least 2")
	}
	return &c, nil
}

// Bounds of the flags checkRanges validates.
const (
	minHeartbeat      = 10 * time.Millisecond
	maxHeartbeat      = 10 * time.Second
	minSyncInterval   = time.Millisecond
	maxSyncInterval   = time.Minute
	minRequestTimeout = 10 * time.Millisecond
	maxRequestTimeout = time.Hour
	maxSnapshotCount  = 1_000_000_000
	maxWatchesPerStrm = 1_000_000
	maxWatchStreams   = 10_000_000
	maxResponseBytes  = 64 << 20
	maxEventLoops     = 1024
)

// checkRanges refuses values of numeric flags outside what a node can run
// with, naming the flag and the range allowed. Zero is refused like any
// other value out of range: none of these flags has a "0 means" meaning.
func checkRanges(c config, snapCount, respBytes int64) error {
	durations := []struct {
		name     string
		v        time.Duration
		min, max time.Duration
	}{
		// Much below 10 ms an idle node spends its time on ticks.
		{"heartbeat-interval", c.HeartbeatInterval, minHeartbeat, maxHeartbeat},
		{"sync-interval", c.SyncInterval, minSyncInterval, maxSyncInterval},
		{"request-timeout", c.RequestTimeout, minRequestTimeout, maxRequestTimeout},
	}
	for _, d := range durations {
		if d.v < d.min || d.v > d.max {
			return fmt.Errorf("-%s %v: must be between %v and %v", d.name, d.v, d.min, d.max)
		}
	}
	counts := []struct {
		name     string
		v        int64
		min, max int64
	}{
		{"snapshot-count", snapCount, 1, maxSnapshotCount},
		{"max-watches-per-stream", int64(c.Limits.MaxWatchesPerStream), 1, maxWatchesPerStrm},
		{"max-watch-streams", int64(c.Limits.MaxWatchStreams), 1, maxWatchStreams},
		{"max-response-bytes", respBytes, 1, maxResponseBytes},
	}
	for _, n := range counts {
		if n.v < n.min || n.v > n.max {
			return fmt.Errorf("-%s %d: must be between %d and %d", n.name, n.v, n.min, n.max)
		}
	}
	if c.EventLoops < -1 || c.EventLoops > maxEventLoops {
		return fmt.Errorf("-event-loops %d: must be -1 (goroutines per connection), 0 (one loop per two processors) or 1 to %d", c.EventLoops, maxEventLoops)
	}
	return nil
}

// givenFlags returns the names of the flags args sets, which fs.Parse
// has accepted.
func givenFlags(fs *flag.FlagSet, args []string) map[string]bool {
	given := map[string]bool{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || len(a) < 2 || a[0] != '-' {
			break
		}
		name, _, hasValue := strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
		given[name] = true
		f := fs.Lookup(name)
		if f == nil {
			continue
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !hasValue && !(ok && b.IsBoolFlag()) {
			i++ // the value is the next argument
		}
	}
	return given
}

func parsePeers(s string) ([]peer, error) {
	var out []peer
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p := peer{Address: f}
		if id, addr, ok := strings.Cut(f, "="); ok {
			p = peer{ID: id, Address: addr}
		}
		if client, peerAddr, ok := strings.Cut(p.Address, "/"); ok {
			if _, _, err := splitHostPort(peerAddr); err != nil {
				return nil, fmt.Errorf("-peers entry %q: peer address: %w", f, err)
			}
			p.Address, p.PeerAddress = client, peerAddr
		}
		host, _, err := splitHostPort(p.Address)
		if err != nil {
			return nil, fmt.Errorf("-peers entry %q: %w", f, err)
		}
		if p.ID == "" {
			// The short form names a peer by its host: node2:8080 is node2.
			if host == "" || net.ParseIP(strings.Trim(host, "[]")) != nil {
				return nil, fmt.Errorf("-peers entry %q: give the node id as id=%s when the host is an IP address", f, f)
			}
			p.ID = host
		}
		out = append(out, p)
	}
	return out, nil
}

func splitHostPort(addr string) (string, string, error) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", "", fmt.Errorf("address %q has no port", addr)
	}
	port := addr[i+1:]
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", "", fmt.Errorf("address %q has an invalid port", addr)
	}
	return addr[:i], port, nil
}

func newLogger(c *config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
