package robustness

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvdb/kvdb/internal/wire"
)

// Connection bounds: memory per connection before and
// after protocol detection, connections that never say anything, and the
// connection cap, all against a real kvdb-server on loopback.

const (
	connRSSBound  = 64 << 20 // allowed RSS growth per hostile case
	connDetectArg = "-protocol-detect-timeout=2s"
	connDetect    = 2 * time.Second
)

// connWaitClosed reads c until the server closes it; false if deadline
// passed first.
func connWaitClosed(c net.Conn, deadline time.Time) bool {
	_ = c.SetReadDeadline(deadline)
	buf := make([]byte, 512)
	for range 1000 {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
	return false
}

func connH2Frame(dst []byte, typ byte, stream uint32, payload []byte) []byte {
	n := len(payload)
	dst = append(dst, byte(n>>16), byte(n>>8), byte(n), typ, 0)
	dst = binary.BigEndian.AppendUint32(dst, stream)
	return append(dst, payload...)
}

// An HTTP/2 client that sends 128 MiB of DATA frames after the preface,
// never a request: detection gives up after a few KiB.
func TestConnSnifferDataFloodRSS(t *testing.T) {
	n := startConnNode(t)
	before := n.rss(t)
	c, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(connH2Frame([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0x4, 0, nil)); err != nil {
		t.Fatal(err)
	}
	var chunk []byte
	for range 64 {
		chunk = connH2Frame(chunk, 0x0, 1, make([]byte, 16<<10))
	}
	sent := 0
	for sent < 128<<20 {
		m, err := c.Write(chunk)
		sent += m
		if err != nil {
			break // the node closed the connection
		}
	}
	after := n.peakRSS(t, time.Second)
	t.Logf("HTTP/2 DATA flood: %s accepted of 128 MiB; node RSS %s -> %s", mib(int64(sent)), mib(before), mib(after))
	if after-before > connRSSBound {
		t.Fatalf("RSS grew by %s", mib(after-before))
	}
	if sent >= 128<<20 {
		t.Fatal("the node read all 128 MiB without deciding the protocol")
	}
	if !connWaitClosed(c, time.Now().Add(connDetect+2*time.Second)) {
		t.Fatal("flooding connection still open")
	}
}

// 100 binary connections each send the header of a 4 MB frame and half its
// body, then stall.
func TestConnHalfSentFramesRSS(t *testing.T) {
	const conns, frame = 100, 4_000_000
	connRaiseFileLimit(t, 2*conns+256)
	n := startConnNode(t)
	before := n.rss(t)
	half := wire.AppendClientHello(nil, wire.Version)
	half = binary.BigEndian.AppendUint32(half, frame-4)
	half = append(half, byte(wire.OpPut), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)
	half = append(half, make([]byte, frame/2)...)
	var wg sync.WaitGroup
	var written atomic.Int64
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, err := net.Dial("tcp", n.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The node reads only what its request buffer has room for;
			// the rest waits in socket buffers or here.
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			m, _ := c.Write(half)
			written.Add(int64(m))
		}()
	}
	wg.Wait()
	after := n.peakRSS(t, 3*time.Second)
	t.Logf("%d half-sent 4 MB frames: %s written by clients; node RSS %s -> %s", conns, mib(written.Load()), mib(before), mib(after))
	if after-before > connRSSBound {
		t.Fatalf("RSS grew by %s", mib(after-before))
	}
}

// 1,000 connections that never send a byte are all closed by the node
// within the detection timeout (+2 s).
func TestConnSilentConnectionsClosed(t *testing.T) {
	const conns = 1000
	connRaiseFileLimit(t, 2*conns+256)
	n := startConnNode(t, connDetectArg)
	var open atomic.Int64
	var wg sync.WaitGroup
	for range conns {
		c, err := net.Dial("tcp", n.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		deadline := time.Now().Add(connDetect + 2*time.Second)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !connWaitClosed(c, deadline) {
				open.Add(1)
			}
		}()
	}
	wg.Wait()
	if k := open.Load(); k > 0 {
		t.Fatalf("%d of %d silent connections still open %v after they were opened", k, conns, connDetect+2*time.Second)
	}
}

// Openings that are a prefix of a protocol and nothing more.
func TestConnPartialOpeningsClosed(t *testing.T) {
	n := startConnNode(t, connDetectArg)
	openings := []string{"K", "KVD", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "GET /healthz HTTP/1.1\r\n"}
	closed := make([]bool, len(openings))
	var wg sync.WaitGroup
	for i, opening := range openings {
		c, err := net.Dial("tcp", n.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, opening); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(connDetect + 2*time.Second)
		wg.Add(1)
		go func() {
			defer wg.Done()
			closed[i] = connWaitClosed(c, deadline)
		}()
	}
	wg.Wait()
	for i, ok := range closed {
		if !ok {
			t.Errorf("connection that sent only %q still open", openings[i])
		}
	}
}

// Past -max-connections a binary client gets a hello and an ERROR frame
// saying why; a slot freed is usable again.
func TestConnMaxConnections(t *testing.T) {
	const limit = 20
	n := startConnNode(t, "-max-connections=20")
	dial := func() (net.Conn, *wire.Reader) {
		c, err := net.Dial("tcp", n.addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(wire.AppendClientHello(nil, wire.Version))
		c.Write(wire.AppendRequest(nil, &wire.Request{Op: wire.OpPing, ID: 1}))
		var hello [wire.ServerHelloSize]byte
		if _, err := io.ReadFull(c, hello[:]); err != nil {
			t.Fatal(err)
		}
		return c, wire.NewReader(c, 4096, wire.MaxResponseFrameSize)
	}
	reply := func(rd *wire.Reader) (wire.Frame, wire.Response) {
		f, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		var r wire.Response
		if err := wire.DecodeResponse(f, &r); err != nil {
			t.Fatal(err)
		}
		return f, r
	}
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range limit {
		c, rd := dial()
		held = append(held, c)
		if f, r := reply(rd); f.Op != wire.OpPing {
			t.Fatalf("connection %d under the cap: %s %s %q", len(held), f.Op, r.Status, r.Payload)
		}
	}
	c, rd := dial()
	f, r := reply(rd)
	c.Close()
	if f.Op != wire.OpError || r.Status != wire.StatusResourceExhausted {
		t.Fatalf("over the cap: %s %s %q", f.Op, r.Status, r.Payload)
	}
	t.Logf("over the cap: %s %q", r.Status, r.Payload)
	held[0].Close()
	held = held[1:]
	for i := 0; ; i++ {
		c, rd := dial()
		f, _ := reply(rd)
		c.Close()
		if f.Op == wire.OpPing {
			break
		}
		if i == 100 {
			t.Fatal("a freed slot never became usable")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
