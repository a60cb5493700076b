package service

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvdb/kvdb/internal/core"
	"github.com/kvdb/kvdb/internal/resp"
)

// The Redis-protocol (RESP2/RESP3) adapter: resp.go (listener and
// connections), resp_conn.go (the connection loop and pipelining),
// resp_cmds.go (the commands), resp_txn.go (MULTI/EXEC/WATCH) and
// resp_server_cmds.go (INFO, CONFIG, CLIENT, COMMAND, ...). It translates
// commands into core's operations and core's answers into RESP replies,
// like the gRPC and binary adapters; it uses neither's types. docs/redis.md
// is its user documentation.

// Redis-protocol connection defaults (Config.RESP).
const (
	DefaultRESPIdleTimeout = 0 // Redis's default: idle clients are kept
	// DefaultRESPReadTimeout is the binary protocol's rule for a frame: a
	// command must be whole this long after its first bytes arrived.
	DefaultRESPReadTimeout = DefaultBinaryReadTimeout
	respWriteTimeout       = 30 * time.Second
	respReadBufferSize     = 16 << 10
	// respMaxPending caps the writes of one connection in flight at once
	// (a pipeline's SETs); past it the connection waits for them.
	respMaxPending = 1024
)

// respMaxArgs caps the arguments of one command (MSET, DEL, MGET): an
// MSET of max-batch-ops pairs, and a few more. Each argument costs a
// 24-byte slice header beside its bytes on the wire (6 at least), so this
// cap, not max-request-size, bounds a command of many empty arguments.
func respMaxArgs(l core.Limits) int { return 2*l.MaxBatchOps + 16 }

// RESPConfig tunes the Redis-protocol listeners.
type RESPConfig struct {
	// IdleTimeout closes a connection that sent nothing for this long (0:
	// never, as Redis's default timeout 0).
	IdleTimeout time.Duration
	// ReadTimeout bounds how long the rest of a command may take to arrive
	// once its first bytes did, counted from them however slowly the rest
	// trickles in; it does not apply between commands.
	ReadTimeout time.Duration
}

func (c *RESPConfig) setDefaults() {
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = DefaultRESPReadTimeout
	}
}

// respServer serves Redis-protocol connections detected on the node's port
// and those accepted on -resp-address.
type respServer struct {
	s      *Server
	cfg    RESPConfig
	nextID atomic.Uint64
	mu     sync.Mutex
	conns  map[*respConn]struct{}
	stop   bool
	wg     sync.WaitGroup
	// cursors are the node's SCAN cursors, shared by its connections.
	cursors scanCursors
}

func newRESPServer(s *Server, cfg RESPConfig) *respServer {
	cfg.setDefaults()
	return &respServer{s: s, cfg: cfg, conns: make(map[*respConn]struct{})}
}

func (r *respServer) limits(inline bool) resp.Limits {
	l := r.s.core.Limits()
	return resp.Limits{
		MaxBulk:    max(l.MaxValueSize, l.MaxKeySize),
		MaxArgs:    respMaxArgs(l),
		MaxRequest: l.MaxRequestSize + 64<<10,
		Inline:     inline,
	}
}

// serveConn serves one Redis-protocol connection; inline accepts inline
// commands (the -resp-address listener).
func (r *respServer) serveConn(c net.Conn, inline bool) {
	if r.s.refuseClient(c.RemoteAddr()) {
		go refuseRESP(c)
		return
	}
	rc := newRESPConn(r, c, inline)
	r.mu.Lock()
	if r.stop {
		r.mu.Unlock()
		if rc.ev != nil {
			rc.ev.release()
		}
		c.Close()
		return
	}
	r.conns[rc] = struct{}{}
	r.wg.Add(1)
	r.mu.Unlock()
	r.s.metrics.respConnsTotal.Inc()
	if rc.ev != nil {
		rc.ev.wake() // the loop takes it from here
		return
	}
	go rc.serve()
}

// refuseRESP answers a client refused by protected mode and closes.
func refuseRESP(c net.Conn) {
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write(resp.AppendError(nil, ProtectedModeMessage))
	lingerClose(c)
}

func (r *respServer) forget(c *respConn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

func (r *respServer) connCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// clients lists the open connections for CLIENT LIST and INFO.
func (r *respServer) clients() []*respConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*respConn, 0, len(r.conns))
	for c := range r.conns {
		out = append(out, c)
	}
	return out
}

func (r *respServer) shutdown() {
	r.mu.Lock()
	r.stop = true
	for c := range r.conns {
		c.close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// ServeRESP serves the Redis protocol on l (the -resp-address listener),
// inline commands included, until Shutdown. TLS, protected mode and
// -max-connections apply as on the node's port.
func (s *Server) ServeRESP(l net.Listener) error {
	l = s.tlsListener(l)
	s.mu.Lock()
	select {
	case <-s.stopC:
		s.mu.Unlock()
		l.Close()
		return nil
	default:
	}
	s.respListeners = append(s.respListeners, l)
	s.mu.Unlock()
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			select {
			case <-s.stopC:
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && (ne.Timeout() || isTemporaryAccept(err)) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		delay = 0
		if s.cfg.MaxConnections > 0 && s.conns.Load() >= int64(s.cfg.MaxConnections) {
			go func() {
				defer c.Close()
				_ = c.SetWriteDeadline(time.Now().Add(refuseTimeout))
				_, _ = c.Write(respRefusal(s.cfg.MaxConnections))
			}()
			continue
		}
		s.conns.Add(1)
		s.resp.serveConn(&countingConn{Conn: c, n: &s.conns}, true)
	}
}

// respRefusal is what a Redis client over -max-connections reads.
func respRefusal(maxConns int) []byte {
	return resp.AppendError(nil, "ERR max number of clients reached: this node serves at most "+itoa(int64(maxConns))+" (-max-connections)")
}

// respError is the RESP error line for a core error: Redis's prefixes where
// Redis has one for the condition.
func respError(err error) string {
	switch {
	case errors.Is(err, core.ErrUnauthenticated):
		return "NOAUTH Authentication required."
	case errors.Is(err, core.ErrMemoryLimit):
		return "OOM command not allowed when used memory > 'maxmemory': " + err.Error()
	}
	switch core.CodeOf(err) {
	case core.PermissionDenied:
		return "NOPERM " + err.Error()
	case core.Unavailable:
		return "TRYAGAIN " + err.Error()
	case core.Unauthenticated:
		return "WRONGPASS invalid username-password pair or user is disabled."
	}
	return "ERR " + err.Error()
}

// respContext is the context of a connection: cancelled when it closes,
// carrying its user after AUTH.
func respContext() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
