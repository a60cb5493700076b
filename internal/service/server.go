package service

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/auth"
	"github.com/kvdb/kvdb/internal/core"
	"github.com/kvdb/kvdb/internal/engine"
	"github.com/kvdb/kvdb/internal/fsm"
	"github.com/kvdb/kvdb/internal/raftnode"
	"github.com/kvdb/kvdb/internal/watch"
)

// DefaultRequestTimeout bounds a request whose caller set no deadline.
const DefaultRequestTimeout = 5 * time.Second

// Config assembles a node.
type Config struct {
	NodeID    string // human name (-node-id)
	MemberID  uint64 // raft member id derived from NodeID
	ClusterID uint64
	Address   string // -address, reported by STATS
	DataDir   string
	MaxMemory int64 // bytes of MemoryUsage allowed; 0: no limit
	// EvictionPolicy says what happens at MaxMemory (default allkeys-lru).
	EvictionPolicy EvictionPolicy
	Version        string
	Limits         Limits
	// RequestTimeout bounds requests without a deadline.
	RequestTimeout time.Duration
	// Raft is passed to raftnode.Start; ID, Name, Address, ClusterID and
	// DataDir are filled in from the fields above. Raft.Peers, Raft.Join and
	// Raft.JoinMembers describe the cluster. A nil Raft.Transport gets the
	// gRPC peer transport, served as Peer says.
	Raft raftnode.Config
	// AdvertiseAddress is how clients (and, in the one-port form, peers)
	// reach this node (host:port).
	AdvertiseAddress string
	// AdvertisePeerAddress is how peers reach this node's peer listener;
	// empty in the one-port form.
	AdvertisePeerAddress string

	// Security (security.go). TLS, when set, makes every protocol on the
	// client port TLS only. Peer says whether and how peers are served.
	// ProtectedMode refuses non-loopback clients while clients are not on
	// TLS and authentication is off (AuthEnabled overrides the replicated
	// setting, for tests).
	TLS           *tls.Config
	Peer          PeerConfig
	ProtectedMode bool
	AuthEnabled   func() bool

	Logger *slog.Logger
	// EnableMetrics serves /metrics on the HTTP side of the port.
	EnableMetrics bool
	// EnablePprof serves Go's /debug/pprof/ profiles on the -metrics-address
	// listener (ServeMetrics) only, never on the client port.
	EnablePprof bool
	// TxnIdleTimeout discards an interactive transaction idle this long
	// (default DefaultTxnIdleTimeout).
	TxnIdleTimeout time.Duration
	// MaxTxns bounds the open interactive transactions (default 10,000).
	MaxTxns int
	// AuthTokenTTL is how long tokens from Authenticate stay valid (default
	// core.DefaultTokenTTL).
	AuthTokenTTL time.Duration
	// Binary tunes the binary protocol served on the same port.
	Binary BinaryConfig
	// RESP tunes the Redis protocol (on the same port and -resp-address).
	RESP RESPConfig
	// EventLoops is how many event loops serve the plain-TCP connections
	// of the binary and Redis protocols (Linux; TLS connections have a
	// goroutine each): 0 picks DefaultEventLoops, a negative number serves
	// every connection with goroutines of its own.
	EventLoops int
	// MaxInFlightRequests caps the KV and transaction requests served at
	// once over both transports; past it requests fail at once with
	// RESOURCE_EXHAUSTED (ErrOverloaded). 0 means
	// DefaultMaxInFlightRequests, negative means no cap.
	MaxInFlightRequests int
	// ProtocolDetectTimeout is how long a new connection has to show which
	// protocol it speaks before it is closed (default
	// DefaultProtocolDetectTimeout).
	ProtocolDetectTimeout time.Duration
	// MaxConnections caps the open client connections; past it a new
	// connection is told so in its protocol and closed. 0 means
	// DefaultMaxConnections, negative means no cap.
	MaxConnections int

	// MaxAnonymousCalls caps the calls without an identity (Authenticate,
	// health and reflection without a token) open at once while
	// authentication is enabled. 0 means DefaultMaxAnonymousCalls,
	// negative means no cap.
	MaxAnonymousCalls int

	// ClientAddress, when set, is how clients reach this node if not at
	// AdvertiseAddress (a host-mapped port); members report it.
	ClientAddress string

	// WatchHistory bounds the watch history window and watcher buffers
	// (-watch-history); zero fields take watch's defaults.
	WatchHistory watch.Config
	// WatchProgressInterval is how often idle progress-notify watchers hear
	// the current revision (default 10 minutes).
	WatchProgressInterval time.Duration
}

// Server is one KVDB node: engine, raft node and the RPC services.
type Server struct {
	cfg     Config
	log     *slog.Logger
	store   *engine.Store
	auth    *auth.Store
	node    *raftnode.Node
	core    *core.Core
	ops     *opRecorder
	metrics *serverMetrics

	transport *raftnode.GRPCTransport // nil when the caller brought its own

	grpc        *grpc.Server
	peerGRPC    *grpc.Server // the -peer-address listener's; nil in the one-port form
	health      *health.Server
	http        *http.Server
	metricsHTTP *http.Server // --metrics-address, when ServeMetrics runs
	binary      *binaryServer
	resp        *respServer

	conns    atomic.Int64
	mu       sync.Mutex
	mux      *portMux
	stopOnce sync.Once
	stopC    chan struct{}
	wg       sync.WaitGroup

	// anonCalls counts the open calls admitAnonymous let in.
	anonCalls atomic.Int64

	// loops serve plain-TCP binary and Redis-protocol connections,
	// started with the first (eventLoops).
	loopsOnce sync.Once
	loops     *evLoops
	// respListeners are the -resp-address listeners ServeRESP serves.
	respListeners []net.Listener
}

// New opens the node's data directory, replays it and starts raft. The
// node serves nothing until Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.ProtocolDetectTimeout <= 0 {
		cfg.ProtocolDetectTimeout = DefaultProtocolDetectTimeout
	}
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.MaxAnonymousCalls == 0 {
		cfg.MaxAnonymousCalls = DefaultMaxAnonymousCalls
	}
	if cfg.EvictionPolicy == "" {
		cfg.EvictionPolicy = EvictAllKeysLRU
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		store:   engine.New(),
		auth:    auth.NewStore(),
		ops:     newOpRecorder(),
		metrics: newServerMetrics(),
		stopC:   make(chan struct{}),
	}
	s.core = core.New(core.Config{
		MemberID:            cfg.MemberID,
		Limits:              cfg.Limits,
		MaxMemory:           cfg.MaxMemory,
		EvictionPolicy:      cfg.EvictionPolicy,
		RequestTimeout:      cfg.RequestTimeout,
		TxnIdleTimeout:      cfg.TxnIdleTimeout,
		MaxTxns:             cfg.MaxTxns,
		MaxInFlightRequests: cfg.MaxInFlightRequests,
		Observer:            s.ops,
		Logger:              cfg.Logger,
		Auth:                s.auth,
		TokenTTL:            cfg.AuthTokenTTL,

		WatchHistory:          cfg.WatchHistory,
		WatchProgressInterval: cfg.WatchProgressInterval,
	}, s.store)
	rc := cfg.Raft
	rc.ID = cfg.MemberID
	rc.Name = cfg.NodeID
	rc.Address = cfg.AdvertiseAddress
	rc.PeerAddress = cfg.AdvertisePeerAddress
	rc.ClientAddress = cfg.ClientAddress
	rc.ClusterID = cfg.ClusterID
	rc.DataDir = cfg.DataDir
	rc.Logger = cfg.Logger
	rc.Metrics = s.metrics
	if rc.Transport == nil {
		s.transport = raftnode.NewGRPCTransport(cfg.Logger, cfg.Peer.Security)
		rc.Transport = s.transport
	}
	sm := fsm.New(s.store, s.auth, s.core.Evicted)
	sm.SetLeaseHook(s.core.LeaseApplied)
	node, err := raftnode.Start(rc, sm)
	if err != nil {
		return nil, err
	}
	s.node = node
	s.core.Run(node)
	s.buildGRPC()
	s.buildPeerGRPC()
	s.buildHTTP()
	s.binary = newBinaryServer(s, cfg.Binary)
	s.resp = newRESPServer(s, cfg.RESP)
	s.registerStateMetrics()
	s.wg.Add(1)
	go s.healthLoop()
	return s, nil
}

func (s *Server) buildGRPC() {
	var unary []grpc.UnaryServerInterceptor
	unary = append(unary, recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(
		func(ctx context.Context, p any) error {
			s.log.Error("panic in request handler", "panic", fmt.Sprint(p))
			return status.Errorf(codes.Internal, "internal error")
		})))
	// Request logs are debug-only; building their fields costs, so the
	// interceptor is only installed when debug logging is on.
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		unary = append(unary, logging.UnaryServerInterceptor(interceptorLogger(s.log),
			logging.WithLogOnEvents(logging.FinishCall),
			logging.WithLevels(func(c codes.Code) logging.Level {
				switch c {
				case codes.Internal, codes.DataLoss, codes.Unknown:
					return logging.LevelWarn
				}
				return logging.LevelDebug
			})))
	}
	unary = append(unary, s.metrics.grpc.UnaryServerInterceptor(), s.protectedUnary, s.statsInterceptor)
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(recovery.StreamServerInterceptor(), s.metrics.grpc.StreamServerInterceptor(), s.protectedStream),
		// Callers are identified, and refused, from their headers,
		// before their request is read.
		grpc.InTapHandle(s.tapHandle),
		// Requests up to twice the limit reach the handler, which rejects
		// those over the limit with INVALID_ARGUMENT naming it.
		grpc.MaxRecvMsgSize(2 * s.core.Limits().MaxRequestSize),
		// What one connection can make the node buffer: at most this many
		// calls, each up to the message size above.
		grpc.MaxConcurrentStreams(MaxConcurrentStreams),
		// A call's headers are read before its token is checked: they
		// are bounded as its body is (gRPC's default is 16 MiB).
		grpc.MaxHeaderListSize(MaxHeaderListSize),
		grpc.MaxSendMsgSize(64 << 20),
		// Long-lived stream workers instead of a goroutine per call: a new
		// goroutine's stack grows (and is copied) on every call, about a
		// tenth of a PUT's server CPU. Calls beyond the workers (all busy
		// waiting on raft) still get a goroutine of their own.
		grpc.NumStreamWorkers(grpcStreamWorkers),
	}
	if s.servesPeersOnClientPort() {
		// Raft streams decode straight into raft messages; everything
		// else goes to the protobuf codec as before.
		opts = append(opts, grpc.ForceServerCodecV2(raftnode.StreamCodec))
	}
	s.grpc = grpc.NewServer(opts...)
	kvdbv1.RegisterKVServiceServer(s.grpc, &kvService{s: s})
	kvdbv1.RegisterAdminServiceServer(s.grpc, &adminService{s: s})
	kvdbv1.RegisterTxnServiceServer(s.grpc, &txnService{s: s})
	kvdbv1.RegisterAuthServiceServer(s.grpc, &authService{s: s})
	kvdbv1.RegisterLeaseServiceServer(s.grpc, &leaseService{s: s})
	kvdbv1.RegisterWatchServiceServer(s.grpc, &watchService{s: s})
	s.health = health.NewServer()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	if s.servesPeersOnClientPort() {
		raftv1.RegisterRaftServiceServer(s.grpc, s.transport)
	}
	reflection.Register(s.grpc)
	s.metrics.grpc.InitializeMetrics(s.grpc)
}

func interceptorLogger(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}

// grpcOps maps full gRPC method names to core's operations.
var grpcOps = map[string]core.Op{
	"/kvdb.v1.KVService/Get":    core.OpGet,
	"/kvdb.v1.KVService/Put":    core.OpPut,
	"/kvdb.v1.KVService/Delete": core.OpDelete,
	"/kvdb.v1.KVService/Range":  core.OpRange,
	"/kvdb.v1.KVService/Batch":  core.OpBatch,

	"/kvdb.v1.TxnService/Begin":    core.OpBegin,
	"/kvdb.v1.TxnService/Get":      core.OpTxnGet,
	"/kvdb.v1.TxnService/Range":    core.OpTxnRange,
	"/kvdb.v1.TxnService/Put":      core.OpTxnPut,
	"/kvdb.v1.TxnService/Delete":   core.OpTxnDelete,
	"/kvdb.v1.TxnService/Commit":   core.OpCommit,
	"/kvdb.v1.TxnService/Rollback": core.OpRollback,
	"/kvdb.v1.TxnService/Execute":  core.OpExecute,
}

// statsInterceptor admits every unary call through core (counted in flight
// for shutdown; KV and transaction calls also under the node-wide cap),
// applies the default deadline and records the latency of KV and
// transaction calls.
// grpcStreamWorkers is how many gRPC calls run on long-lived goroutines;
// write calls block until their entry is applied, so it is sized for a few
// hundred concurrent callers rather than for the CPU count.
const grpcStreamWorkers = 256

// MaxHeaderListSize bounds the headers of one gRPC call, on the client
// port and the peer port (HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE): a token,
// the method's metadata and room to spare.
const MaxHeaderListSize = 64 << 10

// MaxConcurrentStreams bounds the gRPC calls one client connection has open
// at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS): as many as the stream
// workers. A client over it waits until one of its calls ends; the node-wide
// bound on calls is -max-inflight-requests.
const MaxConcurrentStreams = grpcStreamWorkers

func (s *Server) statsInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	op, isOp := grpcOps[info.FullMethod]
	if err := s.core.Enter(isOp); err != nil {
		return nil, toStatus(err)
	}
	defer s.core.Leave(isOp)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.RequestTimeout)
		defer cancel()
	}
	if !isOp {
		return h(ctx, req)
	}
	start := time.Now()
	resp, err := h(ctx, req)
	s.core.Observe(core.GRPC, op, start)
	return resp, err
}

// httpIdleTimeout closes a keep-alive HTTP/1 connection idle this long.
const httpIdleTimeout = 5 * time.Minute

func (s *Server) buildHTTP() {
	// The request headers are part of telling the protocol apart: they get
	// the detection timeout.
	s.http = &http.Server{Handler: s.protectedHTTP(s.httpHandler()), ReadHeaderTimeout: s.cfg.ProtocolDetectTimeout, IdleTimeout: httpIdleTimeout}
}

// httpHandler serves /healthz, /readyz and, unless metrics are disabled,
// /metrics.
func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if ok, why := s.ready(); !ok {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	if s.cfg.EnableMetrics {
		mux.Handle("/metrics", s.MetricsHandler())
	}
	return mux
}

// ServeMetrics serves /metrics, /healthz and /readyz over HTTP/1 on l (the
// --metrics-address listener) until Shutdown, and /debug/pprof/ when
// EnablePprof is set.
func (s *Server) ServeMetrics(l net.Listener) error {
	if !s.cfg.EnableMetrics {
		return errMetricsDisabled
	}
	h := s.httpHandler()
	if s.cfg.EnablePprof {
		h = withPprof(h)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: s.cfg.ProtocolDetectTimeout, IdleTimeout: httpIdleTimeout}
	s.mu.Lock()
	select {
	case <-s.stopC:
		s.mu.Unlock()
		l.Close()
		return nil
	default:
	}
	s.metricsHTTP = srv
	s.mu.Unlock()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ready is true when the node knows a leader and has applied everything it
// knows to be committed.
func (s *Server) ready() (bool, string) {
	st := s.node.Status()
	if s.node.Removed() {
		return false, "removed from the cluster"
	}
	if err := s.node.DiskFull(); err != nil {
		return false, err.Error()
	}
	if st.Leader == 0 {
		return false, "no leader"
	}
	if st.Commit == 0 {
		return false, "no log received yet"
	}
	if st.Applied < st.Commit {
		return false, fmt.Sprintf("applied index %d behind commit index %d", st.Applied, st.Commit)
	}
	return true, ""
}

func (s *Server) healthLoop() {
	defer s.wg.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	last := healthpb.HealthCheckResponse_UNKNOWN
	for {
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if ok, _ := s.ready(); ok {
			st = healthpb.HealthCheckResponse_SERVING
		}
		if st != last {
			for _, svc := range []string{"", kvdbv1.KVService_ServiceDesc.ServiceName, kvdbv1.AdminService_ServiceDesc.ServiceName, kvdbv1.TxnService_ServiceDesc.ServiceName} {
				s.health.SetServingStatus(svc, st)
			}
			last = st
		}
		select {
		case <-t.C:
		case <-s.stopC:
			return
		}
	}
}

// Serve serves gRPC, HTTP/1 (health, metrics) and the binary protocol on l
// until Shutdown. Each connection's first bytes say which (portMux).
func (s *Server) Serve(l net.Listener) error {
	m := newPortMux(s, s.tlsListener(l))
	s.mu.Lock()
	select {
	case <-s.stopC:
		s.mu.Unlock()
		l.Close()
		return nil
	default:
	}
	s.mux = m
	s.mu.Unlock()

	errC := make(chan error, 3)
	go func() { errC <- s.grpc.Serve(m.grpcL) }()
	go func() { errC <- s.http.Serve(m.httpL) }()
	go func() { errC <- m.serve() }()
	err := <-errC
	select {
	case <-s.stopC:
		return nil
	default:
	}
	if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, lets in-flight requests finish
// (until ctx expires), then stops raft, which hands leadership over and
// syncs and closes the WAL.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.shutdown(ctx, false)
}

// Kill stops the node like a crash: no leadership hand-over, in-flight
// requests cut. For tests.
func (s *Server) Kill() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return s.shutdown(ctx, true)
}

func (s *Server) shutdown(ctx context.Context, kill bool) error {
	var err error
	s.stopOnce.Do(func() {
		close(s.stopC)
		s.health.Shutdown()
		if kill {
			err = s.node.Kill()
		} else {
			// Hand leadership over while peers can still reach us, then
			// refuse new requests and let the ones in flight finish: they
			// need raft, so raft stops after them.
			s.node.HandOffLeadership()
			s.core.Drain(ctx)
		}
		s.mu.Lock()
		if s.mux != nil {
			s.mux.close()
		}
		for _, l := range s.respListeners {
			l.Close()
		}
		s.mu.Unlock()
		s.binary.shutdown()
		s.resp.shutdown()
		s.stopEventLoops()
		s.core.Stop()
		if !kill {
			err = s.node.Stop()
		}
		// Raft streams from peers never end on their own, so no graceful
		// stop here: every unary request has finished or been cut by ctx.
		s.grpc.Stop()
		if s.peerGRPC != nil {
			s.peerGRPC.Stop()
		}
		_ = s.http.Shutdown(ctx)
		s.mu.Lock()
		if s.metricsHTTP != nil {
			_ = s.metricsHTTP.Shutdown(ctx)
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return err
}

func (s *Server) header(rev int64) *kvdbv1.ResponseHeader {
	return &kvdbv1.ResponseHeader{
		ClusterId: s.node.ClusterID(),
		MemberId:  s.cfg.MemberID,
		Revision:  rev,
		RaftTerm:  s.node.Term(),
	}
}

// Store exposes the engine for tests and tools in this module.
func (s *Server) Store() *engine.Store { return s.store }

// Node exposes the raft node for tests and tools in this module.
func (s *Server) Node() *raftnode.Node { return s.node }

// countingConn counts open client connections for STATS and
// -max-connections.
type countingConn struct {
	net.Conn
	n    *atomic.Int64
	once sync.Once
}

func (c *countingConn) Close() error {
	c.once.Do(func() { c.n.Add(-1) })
	return c.Conn.Close()
}

func (s *Server) memberName(id uint64) string {
	if id == 0 {
		return ""
	}
	if m, ok := s.node.Member(id); ok && m.Name != "" {
		return m.Name
	}
	return fmt.Sprintf("%x", id)
}

// DefaultEventLoops is one event loop for every two processors the runtime
// uses: the loops answer reads and hand writes to the raft and apply
// loops, which need the other processors.
func DefaultEventLoops() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// eventLoops starts the event loops on first use; nil when connections are
// served by goroutines.
func (s *Server) eventLoops() *evLoops {
	s.loopsOnce.Do(func() {
		n := s.cfg.EventLoops
		if n < 0 {
			return
		}
		if n == 0 {
			n = DefaultEventLoops()
		}
		ls, err := newEvLoops(n)
		if err != nil {
			if !errors.Is(err, errors.ErrUnsupported) {
				s.log.Warn("event loops unavailable; serving a goroutine per connection", "err", err)
			}
			return
		}
		s.loops = ls
	})
	return s.loops
}

// loopConn moves c to an event loop for h: nil when it stays with
// goroutines (no loops, or c is not plain TCP).
func (s *Server) loopConn(c net.Conn, h evHandler, writeTimeout time.Duration) *evConn {
	if ls := s.eventLoops(); ls != nil {
		if ec, ok := ls.take(c, h, writeTimeout); ok {
			return ec
		}
	}
	return nil
}

// stopEventLoops ends the loops once their connections are closed; none
// start after it.
func (s *Server) stopEventLoops() {
	s.loopsOnce.Do(func() {})
	if s.loops != nil {
		s.loops.shutdown()
	}
}
