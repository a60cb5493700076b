package service

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/kvdb/kvdb/internal/wire"
)

// Binary-protocol connection defaults (Config.Binary).
const (
	DefaultBinaryMaxInFlight = wire.DefaultMaxInFlight
	DefaultBinaryIdleTimeout = 5 * time.Minute
	DefaultBinaryReadTimeout = 30 * time.Second
	binaryWriteTimeout       = 30 * time.Second
	binaryReadBufferSize     = 32 << 10
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
}

// binaryMatcher is the cmux matcher of the binary protocol: the connection
// opens with wire.Magic. It must run before the HTTP matchers, which would
// otherwise read the magic as the start of a request line.
func binaryMatcher(r io.Reader) bool {
	var b [len(wire.Magic)]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return false
	}
	return bytes.Equal(b[:], []byte(wire.Magic))
}

// binaryServer accepts binary-protocol connections and tracks them so
// Shutdown can close them.
type binaryServer struct {
	s     *Server
	cfg   BinaryConfig
	mu    sync.Mutex
	conns map[*binaryConn]struct{}
	stop  bool
	wg    sync.WaitGroup
}

func newBinaryServer(s *Server, cfg BinaryConfig) *binaryServer {
	cfg.setDefaults()
	return &binaryServer{s: s, cfg: cfg, conns: make(map[*binaryConn]struct{})}
}

func (b *binaryServer) maxFrame() int {
	return b.s.core.Limits().MaxRequestSize + 64<<10
}

// serve accepts connections from l until it is closed.
func (b *binaryServer) serve(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		if b.s.refuseClient(c.RemoteAddr()) {
			go refuseBinary(c)
			continue
		}
		bc := newBinaryConn(b, c)
		b.mu.Lock()
		if b.stop {
			b.mu.Unlock()
			c.Close()
			continue
		}
		b.conns[bc] = struct{}{}
		b.wg.Add(2)
		b.mu.Unlock()
		go bc.writeLoop()
		go bc.readLoop()
	}
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
