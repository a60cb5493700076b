package service

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Connection limits of the shared port (Config).
const (
	// DefaultProtocolDetectTimeout is how long a new connection has to show
	// which protocol it speaks (-protocol-detect-timeout).
	DefaultProtocolDetectTimeout = 10 * time.Second
	// DefaultMaxConnections caps the open client connections
	// (-max-connections).
	DefaultMaxConnections = 10_000

	// maxRefusing bounds the connections over the cap being told so at
	// once; past it they are closed without a word.
	maxRefusing = 64
	// refuseTimeout bounds the whole refusal of one connection.
	refuseTimeout = 2 * time.Second
	// lingerBytes and lingerTimeout bound what is read from a connection
	// after its last answer (an ERROR frame, a refusal), so the close does
	// not reset it before the client reads the answer.
	lingerBytes   = 8 << 20
	lingerTimeout = 500 * time.Millisecond
)

// portMux accepts the node's connections, enforces -max-connections, detects
// each connection's protocol within -protocol-detect-timeout and hands it to
// the binary server, the gRPC server or the HTTP/1 server.
type portMux struct {
	s        *Server
	root     net.Listener
	grpcL    *connListener
	httpL    *connListener
	detect   time.Duration
	maxConns int // < 0: no cap
	refusing chan struct{}
	lastWarn atomic.Int64 // unix nanos of the last "at the cap" log line

	mu       sync.Mutex
	closed   bool
	sniffing map[net.Conn]struct{}
}

func newPortMux(s *Server, root net.Listener) *portMux {
	return &portMux{
		s: s, root: root,
		grpcL:    newConnListener(root.Addr()),
		httpL:    newConnListener(root.Addr()),
		detect:   s.cfg.ProtocolDetectTimeout,
		maxConns: s.cfg.MaxConnections,
		refusing: make(chan struct{}, maxRefusing),
		sniffing: make(map[net.Conn]struct{}),
	}
}

// serve accepts connections until the listener is closed.
func (m *portMux) serve() error {
	var delay time.Duration
	for {
		c, err := m.root.Accept()
		if err != nil {
			if m.isClosed() {
				return net.ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && (ne.Timeout() || isTemporaryAccept(err)) {
				// Out of file descriptors and the like: back off as
				// net/http does rather than spin or give up.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if m.maxConns > 0 && m.s.conns.Load() >= int64(m.maxConns) {
			m.refuse(c)
			continue
		}
		m.s.conns.Add(1)
		go m.detectAndServe(&countingConn{Conn: c, n: &m.s.conns})
	}
}

func isTemporaryAccept(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (m *portMux) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// detectAndServe sniffs c within the detection timeout and hands it over;
// a connection that says nothing recognisable in time is closed.
func (m *portMux) detectAndServe(c net.Conn) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		c.Close()
		return
	}
	m.sniffing[c] = struct{}{}
	m.mu.Unlock()

	_ = c.SetDeadline(time.Now().Add(m.detect))
	sn := sniffer{w: c}
	p, prefix, err := sn.sniff(c)

	m.mu.Lock()
	delete(m.sniffing, c)
	closed := m.closed
	m.mu.Unlock()
	if p == protoNone || closed {
		m.s.log.Debug("connection closed before its protocol was recognised",
			"remote", c.RemoteAddr().String(), "bytes", len(prefix), "err", err)
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	sc := &sniffedConn{Conn: c, prefix: prefix}
	switch p {
	case protoBinary:
		m.s.binary.serveConn(sc)
	case protoRESP:
		m.s.resp.serveConn(sc, false)
	case protoGRPC:
		m.grpcL.deliver(sc)
	case protoHTTP1:
		m.httpL.deliver(sc)
	}
}

// refuse tells a connection over -max-connections so, in its protocol, and
// closes it. At most maxRefusing are refused at once, each for at most
// refuseTimeout; the others are closed at once.
func (m *portMux) refuse(c net.Conn) {
	select {
	case m.refusing <- struct{}{}:
	default:
		c.Close()
		return
	}
	if now := time.Now().UnixNano(); now-m.lastWarn.Load() > int64(time.Minute) {
		m.lastWarn.Store(now)
		m.s.log.Warn("refusing connections: at -max-connections", "max_connections", m.maxConns)
	}
	go func() {
		defer func() { <-m.refusing }()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(min(m.detect, refuseTimeout)))
		sn := sniffer{w: c}
		p, _, _ := sn.sniff(c)
		msg := fmt.Sprintf("too many connections: this node serves at most %d (-max-connections)", m.maxConns)
		out := refusal(p, sn.streamID, m.s.binary.hello(), msg)
		if len(out) == 0 {
			return
		}
		if _, err := c.Write(out); err != nil {
			return
		}
		lingerClose(c)
	}()
}

// lingerClose ends our side of c after a last answer and drains theirs for
// at most lingerTimeout and lingerBytes: closing with unread input resets
// the connection, which can discard the answer before the client reads it.
// The caller closes c afterwards.
func lingerClose(c net.Conn) {
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, lingerBytes))
}

// close stops accepting, ends the gRPC and HTTP listeners and closes the
// connections still being detected.
func (m *portMux) close() {
	m.mu.Lock()
	m.closed = true
	for c := range m.sniffing {
		c.Close()
	}
	m.mu.Unlock()
	m.root.Close()
	m.grpcL.Close()
	m.httpL.Close()
}

// sniffedConn replays the bytes read during detection, then reads the
// connection.
type sniffedConn struct {
	net.Conn
	prefix []byte
}

// CloseWrite half-closes the connection when the one beneath can.
func (c *sniffedConn) CloseWrite() error { return closeWrite(c.Conn) }

// CloseWrite half-closes the connection when the one beneath can.
func (c *countingConn) CloseWrite() error { return closeWrite(c.Conn) }

func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (c *sniffedConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		if len(c.prefix) == 0 {
			c.prefix = nil // let the detection buffer go
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// connListener is a net.Listener fed with detected connections.
type connListener struct {
	addr net.Addr
	c    chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, c: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) deliver(c net.Conn) {
	select {
	case l.c <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }
