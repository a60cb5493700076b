package service

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	"github.com/kvdb/kvdb/internal/raftnode"
	"github.com/kvdb/kvdb/internal/wire"
)

// PeerConfig says whether and how the node serves raft traffic from peers.
type PeerConfig struct {
	// Enabled serves RaftService. A standalone node leaves it off and
	// accepts no peer traffic at all.
	Enabled bool
	// OwnListener: peers are served by ServePeers on a listener of their own
	// (-peer-address) and never on the client port. Without it, the
	// one-port form, RaftService is served on the client port and only to
	// streams that authenticate as a peer.
	OwnListener bool
	// ServerTLS is the TLS configuration of the peer listener (its
	// ClientAuth decides whether peers must show a certificate); nil serves
	// the peer listener in plaintext.
	ServerTLS *tls.Config
	// Security is how the transport authenticates peers and dials them.
	Security raftnode.PeerSecurity
	// MaxConnections caps the open connections of the peer listener; past
	// it a new connection is closed at once. 0 means
	// DefaultMaxPeerConnections, negative means no cap.
	MaxConnections int
}

// Bounds of the peer listener. A member keeps one connection to each peer
// for raft messages, with one call on it, and opens one more while it
// sends that peer a snapshot.
const (
	// DefaultMaxPeerConnections caps the peer listener's open connections
	// (PeerConfig.MaxConnections).
	DefaultMaxPeerConnections = 128
	// maxPeerStreams bounds the calls one peer connection has open at once.
	maxPeerStreams = 16
)

// cappedListener closes, at once, connections accepted while max are open.
// One remote host holds at most a quarter of them (perHost), so a host that opens
// connections and sends nothing (they are closed after the detection
// timeout, and it opens more) cannot keep the members on other hosts out.
type cappedListener struct {
	net.Listener
	max      int64
	log      *slog.Logger
	lastWarn atomic.Int64 // unix nanos of the last "at the cap" log line

	mu     sync.Mutex
	n      int64            // open connections
	byHost map[string]int64 // open connections by remote host
}

// perHost is what one host may hold: a quarter of the cap, but not less
// than 8 (or the whole cap when it is smaller), for the members that share
// a host.
func (l *cappedListener) perHost() int64 { return max(l.max/4, min(l.max, 8)) }

func (l *cappedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host := remoteHost(c)
		l.mu.Lock()
		if l.byHost == nil {
			l.byHost = map[string]int64{}
		}
		ok := l.n < l.max && l.byHost[host] < l.perHost()
		if ok {
			l.n++
			l.byHost[host]++
		}
		l.mu.Unlock()
		if ok {
			return &hostConn{Conn: c, l: l, host: host}, nil
		}
		c.Close()
		if now := time.Now().UnixNano(); now-l.lastWarn.Load() > int64(time.Minute) {
			l.lastWarn.Store(now)
			l.log.Warn("refusing peer connections: at the cap", "max_peer_connections", l.max,
				"max_per_host", l.perHost(), "remote", host)
		}
	}
}

// hostConn gives its place in the cap back when it closes.
type hostConn struct {
	net.Conn
	l    *cappedListener
	host string
	once sync.Once
}

func (c *hostConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.byHost[c.host]--; c.l.byHost[c.host] <= 0 {
			delete(c.l.byHost, c.host)
		}
		c.l.n--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// remoteHost is the address a connection comes from, without its port.
func remoteHost(c net.Conn) string {
	addr := c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// ProtectedModeMessage is the error a non-loopback client gets from a node in
// protected mode, on every protocol.
const ProtectedModeMessage = "DENIED: kvdb-server is in protected mode: with no TLS and authentication " +
	"disabled it accepts clients only from the loopback interface. Either connect from 127.0.0.1 or ::1, " +
	"or enable TLS (-cert-file and -key-file) or authentication on the server, or, only on a network " +
	"you trust, restart it with -protected-mode=false"

// errProtectedMode is ProtectedModeMessage as a gRPC status.
var errProtectedMode = status.Error(codes.PermissionDenied, ProtectedModeMessage)

// protected reports whether protected mode is in force now: it is asked for
// (-protected-mode, the default), clients are not on TLS, and
// authentication is not enabled.
func (s *Server) protected() bool {
	if !s.cfg.ProtectedMode || s.cfg.TLS != nil {
		return false
	}
	if s.cfg.AuthEnabled != nil {
		return !s.cfg.AuthEnabled()
	}
	return !s.core.AuthEnabled()
}

// refuseClient is the protected-mode decision for a client connection from
// addr: true when it must be refused.
func (s *Server) refuseClient(addr net.Addr) bool {
	return s.protected() && !isLoopback(addr)
}

// isLoopback is true for a TCP peer on 127.0.0.0/8 or ::1, and for a
// connection that is not TCP (a unix socket, an in-process pipe).
func isLoopback(addr net.Addr) bool {
	switch a := addr.(type) {
	case nil:
		return false
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.Network() != "tcp"
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isPeerMethod: RaftService does its own authentication (peer_auth.go in
// raftnode), so protected mode, which is about clients, leaves it alone.
func isPeerMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, raftServicePrefix)
}

var raftServicePrefix = "/" + raftv1.RaftService_ServiceDesc.ServiceName + "/"

func (s *Server) protectedUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if p, ok := peer.FromContext(ctx); ok && s.refuseClient(p.Addr) {
		return nil, errProtectedMode
	}
	return h(ctx, req)
}

func (s *Server) protectedStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if !isPeerMethod(info.FullMethod) {
		if p, ok := peer.FromContext(ss.Context()); ok && s.refuseClient(p.Addr) {
			return errProtectedMode
		}
	}
	return h(srv, ss)
}

// protectedHTTP answers 403 with ProtectedModeMessage to refused clients.
func (s *Server) protectedHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if addr, err := net.ResolveTCPAddr("tcp", r.RemoteAddr); err == nil && s.refuseClient(addr) {
			http.Error(w, ProtectedModeMessage, http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refuseBinary answers a refused binary-protocol client: the server hello,
// then a connection-level ERROR frame (PERMISSION_DENIED) with
// ProtectedModeMessage, then the close.
func refuseBinary(c net.Conn) {
	defer c.Close()
	var hello [wire.ClientHelloSize]byte
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, hello[:]); err != nil {
		return
	}
	b := wire.AppendServerHello(nil, wire.ServerHello{Version: wire.Version, MaxFrameSize: 1 << 20, MaxInFlight: 1})
	b = wire.AppendError(b, wire.OpError, 0, wire.StatusPermissionDenied, ProtectedModeMessage)
	_, _ = c.Write(b)
}

// tlsListener wraps the client listener in TLS when the node has it: every
// protocol on the port (gRPC, HTTP, binary) is then TLS only.
func (s *Server) tlsListener(l net.Listener) net.Listener {
	if s.cfg.TLS == nil {
		return l
	}
	return tls.NewListener(l, s.cfg.TLS)
}

// buildPeerGRPC builds the gRPC server of the peer listener.
func (s *Server) buildPeerGRPC() {
	if s.transport == nil || !s.cfg.Peer.Enabled || !s.cfg.Peer.OwnListener {
		return
	}
	opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(64 << 20), grpc.MaxSendMsgSize(64 << 20), grpc.ForceServerCodecV2(raftnode.StreamCodec),
		// A call is refused from its headers unless they authenticate a
		// member: nothing of it is read before.
		grpc.InTapHandle(s.peerTap),
		grpc.MaxConcurrentStreams(maxPeerStreams),
		grpc.MaxHeaderListSize(MaxHeaderListSize),
		// The TLS handshake and the HTTP/2 preface must arrive within the
		// detection timeout, and a connection without a call open is
		// closed after as long.
		grpc.ConnectionTimeout(s.cfg.ProtocolDetectTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: s.cfg.ProtocolDetectTimeout}),
	}
	if s.cfg.Peer.ServerTLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.cfg.Peer.ServerTLS)))
	}
	s.peerGRPC = grpc.NewServer(opts...)
	raftv1.RegisterRaftServiceServer(s.peerGRPC, s.transport)
}

// peerTap authenticates every call on the peer listener from its headers
// (raftnode.GRPCTransport.AuthorizeHeaders).
func (s *Server) peerTap(ctx context.Context, _ *tap.Info) (context.Context, error) {
	return s.transport.AuthorizeHeaders(ctx)
}

// errNoPeerListener is returned by ServePeers on a node without one.
var errNoPeerListener = errors.New("service: this node has no peer listener (PeerConfig.OwnListener)")

// ServePeers serves raft traffic from peers on l (the -peer-address
// listener) until Shutdown.
func (s *Server) ServePeers(l net.Listener) error {
	if s.peerGRPC == nil {
		l.Close()
		return errNoPeerListener
	}
	max := s.cfg.Peer.MaxConnections
	if max == 0 {
		max = DefaultMaxPeerConnections
	}
	if max > 0 {
		l = &cappedListener{Listener: l, max: int64(max), log: s.log}
	}
	err := s.peerGRPC.Serve(l)
	if errors.Is(err, grpc.ErrServerStopped) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// servesPeersOnClientPort: the one-port form registers RaftService on the
// client gRPC server.
func (s *Server) servesPeersOnClientPort() bool {
	return s.transport != nil && s.cfg.Peer.Enabled && !s.cfg.Peer.OwnListener
}
