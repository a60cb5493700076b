package service

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/kvdb/kvdb/internal/wire"
)

// Binary-protocol connection defaults (Config.Binary).
const (
	DefaultBinaryMaxInFlight = wire.DefaultMaxInFlight
	DefaultBinaryIdleTimeout = 5 * time.Minute
	DefaultBinaryReadTimeout = 30 * time.Second
	binaryWriteTimeout       = 30 * time.Second
	binaryReadBufferSize     = 32 << 10
	// DefaultBinaryMaxRequestBuffer caps the bytes of large frames being
	// received at once across connections (-max-request-buffer).
	DefaultBinaryMaxRequestBuffer = 16 << 20
)

// BinaryConfig tunes the binary protocol listener.
type BinaryConfig struct {
	// MaxInFlight caps the requests of one connection that are being served
	// at once; past it the server stops reading that connection until a
	// reply goes out (TCP pushes back on the client).
	MaxInFlight int
	// IdleTimeout closes a connection that sent nothing for this long while
	// nothing of it was in flight.
	IdleTimeout time.Duration
	// ReadTimeout bounds how long the rest of a frame (or the hello) may take
	// to arrive once its first bytes did.
	ReadTimeout time.Duration
	// MaxRequestBuffer caps, across connections, the bytes held for frames
	// larger than a connection's read buffer (32 KiB) while they arrive. A
	// connection whose frame does not fit waits (without reading) until it
	// does, for at most ReadTimeout. At least one max-size frame always fits.
	MaxRequestBuffer int
}

func (c *BinaryConfig) setDefaults() {
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultBinaryMaxInFlight
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultBinaryIdleTimeout
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = DefaultBinaryReadTimeout
	}
	if c.MaxRequestBuffer <= 0 {
		c.MaxRequestBuffer = DefaultBinaryMaxRequestBuffer
	}
}

// binaryServer accepts binary-protocol connections and tracks them so
// Shutdown can close them.
type binaryServer struct {
	s   *Server
	cfg BinaryConfig
	// buffers is the MaxRequestBuffer budget the connections' readers
	// acquire from before growing past their initial buffer.
	buffers *semaphore.Weighted
	bufCap  int64
	mu      sync.Mutex
	conns   map[*binaryConn]struct{}
	stop    bool
	wg      sync.WaitGroup
}

func newBinaryServer(s *Server, cfg BinaryConfig) *binaryServer {
	cfg.setDefaults()
	b := &binaryServer{s: s, cfg: cfg, conns: make(map[*binaryConn]struct{})}
	b.bufCap = int64(max(cfg.MaxRequestBuffer, b.maxFrame()))
	b.buffers = semaphore.NewWeighted(b.bufCap)
	return b
}

// hello is the server hello of a connection this server accepts.
func (b *binaryServer) hello() wire.ServerHello {
	return wire.ServerHello{Version: wire.Version, MaxFrameSize: uint32(b.maxFrame()), MaxInFlight: uint32(b.cfg.MaxInFlight)}
}

// errRequestBufferFull ends a connection whose large frame waited
// ReadTimeout for room under MaxRequestBuffer.
var errRequestBufferFull = errors.New("server busy: no room to buffer a large frame (-max-request-buffer)")

// frameBudget is a connection's view of the MaxRequestBuffer budget
// (wire.Budget): waiting stops when the connection closes or after
// ReadTimeout.
type frameBudget struct{ c *binaryConn }

func (fb frameBudget) Acquire(n int) error {
	b := fb.c.b
	if b.buffers.TryAcquire(int64(n)) {
		return nil
	}
	ctx, cancel := context.WithTimeout(fb.c.ctx, b.cfg.ReadTimeout)
	defer cancel()
	if err := b.buffers.Acquire(ctx, int64(n)); err != nil {
		return errRequestBufferFull
	}
	return nil
}

func (fb frameBudget) Release(n int) { fb.c.b.buffers.Release(int64(n)) }

func (b *binaryServer) maxFrame() int {
	return b.s.core.Limits().MaxRequestSize + 64<<10
}

// serveConn serves one detected binary-protocol connection.
func (b *binaryServer) serveConn(c net.Conn) {
	if b.s.refuseClient(c.RemoteAddr()) {
		go refuseBinary(c)
		return
	}
	bc := newBinaryConn(b, c)
	bc.ev = b.s.loopConn(c, bc, binaryWriteTimeout)
	b.mu.Lock()
	if b.stop {
		b.mu.Unlock()
		if bc.ev != nil {
			bc.ev.release()
		}
		c.Close()
		return
	}
	b.conns[bc] = struct{}{}
	if bc.ev != nil {
		b.wg.Add(1)
		b.mu.Unlock()
		bc.ev.wake() // the loop takes it from here
		return
	}
	b.wg.Add(2)
	b.mu.Unlock()
	go bc.writeLoop()
	go bc.readLoop()
}

// connCount is the number of open binary-protocol connections.
func (b *binaryServer) connCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

func (b *binaryServer) forget(c *binaryConn) {
	b.mu.Lock()
	delete(b.conns, c)
	b.mu.Unlock()
}

// shutdown closes every connection and waits for their goroutines.
func (b *binaryServer) shutdown() {
	b.mu.Lock()
	b.stop = true
	for c := range b.conns {
		c.close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}
