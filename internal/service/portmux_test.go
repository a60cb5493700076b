package service

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/wire"
)

// waitClosed reads c until the server closes it or deadline passes, and
// returns how long that took and everything read.
func waitClosed(t *testing.T, c net.Conn, deadline time.Duration) (time.Duration, []byte) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(deadline))
	var got bytes.Buffer
	buf := make([]byte, 4096)
	for range 10_000 {
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection still open after %v (read %q)", deadline, got.Bytes())
			}
			return time.Since(start), got.Bytes()
		}
	}
	t.Fatal("connection kept sending")
	return 0, nil
}

func TestPortDetectionClosesSilentAndPartialOpenings(t *testing.T) {
	const detect = 300 * time.Millisecond
	n := startNode(t, t.TempDir(), func(c *Config) { c.ProtocolDetectTimeout = detect })
	openings := map[string]string{
		"silent":         "",
		"K":              "K",
		"KVD":            "KVD",
		"HTTP/2 preface": http2Preface,
		"GE":             "GE",
	}
	for name, send := range openings {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", n.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, send); err != nil {
				t.Fatal(err)
			}
			if _, got := waitClosed(t, c, detect+2*time.Second); len(got) != 0 {
				t.Fatalf("server sent %q", got)
			}
		})
	}
	t.Run("not a protocol", func(t *testing.T) {
		c, err := net.Dial("tcp", n.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "HELLO\r\n")
		waitClosed(t, c, detect+2*time.Second)
	})
	// Everything still works after.
	if r := dialRaw(t, n.addr).call(&wire.Request{Op: wire.OpPing, ID: 1}); r.Status != wire.StatusOK {
		t.Fatalf("PING: %+v", r)
	}
}

// An HTTP/2 client that sends DATA frames instead of a request is closed
// once detection has read sniffMaxBytes, long before the timeout, and the
// node keeps nothing of it.
func TestPortDetectionStopsAtByteLimit(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) { c.ProtocolDetectTimeout = time.Minute })
	c, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := []byte(http2Preface)
	b = appendH2Frame(b, h2FrameSettings, 0, 0, nil)
	for len(b) < 4*sniffMaxBytes {
		b = appendH2Frame(b, h2FrameData, 0, 1, make([]byte, 1000))
	}
	go c.Write(b) // the server may close before reading it all
	if d, _ := waitClosed(t, c, 10*time.Second); d > 5*time.Second {
		t.Fatalf("closed after %v", d)
	}
}

func TestMaxConnectionsRefusesInEachProtocol(t *testing.T) {
	const limit = 4
	n := startNode(t, t.TempDir(), func(c *Config) { c.MaxConnections = limit })
	// Fill the node with binary connections (the test's own gRPC client
	// may hold one too); the first refused one says why.
	var refusedBinary *wire.Response
	for range limit + 2 {
		c, err := net.Dial("tcp", n.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(wire.AppendClientHello(nil, wire.Version))
		var hello [wire.ServerHelloSize]byte
		if _, err := io.ReadFull(c, hello[:]); err != nil {
			t.Fatal(err)
		}
		rd := wire.NewReader(c, 4096, wire.MaxResponseFrameSize)
		c.Write(wire.AppendRequest(nil, &wire.Request{Op: wire.OpPing, ID: 7}))
		f, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		var r wire.Response
		if err := wire.DecodeResponse(f, &r); err != nil {
			t.Fatal(err)
		}
		if f.Op == wire.OpError {
			refusedBinary = &r
			break
		}
	}
	if refusedBinary == nil {
		t.Fatalf("no binary connection refused past %d", limit)
	}
	if refusedBinary.Status != wire.StatusResourceExhausted || refusedBinary.ID != 0 || !strings.Contains(string(refusedBinary.Payload), "too many connections") {
		t.Fatalf("binary refusal: %s id %d %q", refusedBinary.Status, refusedBinary.ID, refusedBinary.Payload)
	}

	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + n.addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "too many connections") {
		t.Fatalf("HTTP refusal: %d %q", resp.StatusCode, body)
	}

	gc, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = kvdbv1.NewKVServiceClient(gc).Get(ctx, &kvdbv1.GetRequest{Key: []byte("k")})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "too many connections") {
		t.Fatalf("gRPC refusal: %v", err)
	}
}

func TestBinaryFrameStallClosedAfterReadTimeout(t *testing.T) {
	const readTimeout = 400 * time.Millisecond
	n := startNode(t, t.TempDir(), func(c *Config) {
		c.Binary.ReadTimeout = readTimeout
		c.Binary.IdleTimeout = time.Minute
	})
	c := dialRaw(t, n.addr)
	frame := wire.AppendPut(nil, 1, 0, []byte("k"), make([]byte, 1000))
	// One byte every 50 ms: each read makes progress, the frame never
	// completes within the read timeout.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := range len(frame) - 1 {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := c.c.Write(frame[i : i+1]); err != nil {
				return
			}
		}
	}()
	waitClosed(t, c.c, readTimeout+2*time.Second)
}

// The §7 rows of docs/protocol.md about the header and the hello.
func TestBinaryHeaderViolations(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ping := func(id uint64) []byte { return wire.AppendRequest(nil, &wire.Request{Op: wire.OpPing, ID: id}) }
	cases := []struct {
		name   string
		frame  []byte
		op     wire.Opcode
		id     uint64
		st     wire.Status
		closes bool
	}{
		{"reserved byte", func() []byte { b := ping(5); b[7] = 1; return b }(), wire.OpError, 0, wire.StatusInvalidArgument, true},
		{"status byte", func() []byte { b := ping(6); b[6] = 3; return b }(), wire.OpError, 0, wire.StatusInvalidArgument, true},
		{"status byte, unknown opcode", func() []byte { b := ping(6); b[4], b[6] = 0x55, 3; return b }(), wire.OpError, 0, wire.StatusInvalidArgument, true},
		{"undefined flag on PING", func() []byte { b := ping(7); b[5] = 0x40; return b }(), wire.OpPing, 7, wire.StatusInvalidArgument, false},
		{"PREFIX on GET", wire.AppendGet(nil, 8, wire.FlagPrefix, []byte("k")), wire.OpGet, 8, wire.StatusInvalidArgument, false},
		{"KEYS_ONLY on PUT", wire.AppendPut(nil, 9, wire.FlagKeysOnly, []byte("k"), nil), wire.OpPut, 9, wire.StatusInvalidArgument, false},
		{"flags on BATCH", func() []byte {
			return wire.AppendRequest(nil, &wire.Request{Op: wire.OpBatch, ID: 10, Flags: wire.FlagSerializable})
		}(), wire.OpBatch, 10, wire.StatusInvalidArgument, false},
		{"length below header", []byte{0, 0, 0, 2, 2, 0}, wire.OpError, 0, wire.StatusInvalidArgument, true},
		{"length over the limit", []byte{0x7f, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9}, wire.OpError, 0, wire.StatusResourceExhausted, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, n.addr)
			c.write(tc.frame)
			r, err := c.next()
			if err != nil {
				t.Fatal(err)
			}
			if r.Op != tc.op || r.ID != tc.id || r.Status != tc.st {
				t.Fatalf("reply op %s id %d %s (%s), want op %s id %d %s", r.Op, r.ID, r.Status, r.Payload, tc.op, tc.id, tc.st)
			}
			if tc.closes {
				waitClosed(t, c.c, 5*time.Second)
				return
			}
			if r := c.call(&wire.Request{Op: wire.OpPing, ID: 99}); r.Status != wire.StatusOK {
				t.Fatalf("PING after the error reply: %+v", r)
			}
		})
	}
	t.Run("reserved hello bytes ignored", func(t *testing.T) {
		c, err := net.Dial("tcp", n.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		hello := wire.AppendClientHello(nil, wire.Version)
		hello[5], hello[6], hello[7] = 1, 2, 3
		c.Write(append(hello, ping(3)...))
		rd := bufio.NewReader(c)
		var sh [wire.ServerHelloSize]byte
		if _, err := io.ReadFull(rd, sh[:]); err != nil {
			t.Fatal(err)
		}
		if h, err := wire.ParseServerHello(sh[:]); err != nil || h.Status != wire.HelloOK {
			t.Fatalf("hello %+v %v", h, err)
		}
		f, err := wire.NewReader(rd, 64, 1<<20).Next()
		if err != nil || f.Op != wire.OpPing || f.ID != 3 || f.Status != wire.StatusOK {
			t.Fatalf("PING reply %+v %v", f, err)
		}
	})
}

// A connection whose large frame finds no room under MaxRequestBuffer
// waits, unread: it is served once the room is back, or gets
// RESOURCE_EXHAUSTED after the read timeout.
func TestBinaryRequestBufferBackpressure(t *testing.T) {
	connModes(t, func(t *testing.T, mode func(*Config)) {
		n := startNode(t, t.TempDir(), func(c *Config) {
			mode(c)
			// Long enough that the stalled frame below is not timed out
			// while the test holds it; the no-room case waits it once.
			c.Binary.ReadTimeout = 3 * time.Second
			c.Binary.MaxRequestBuffer = 1 // raised to one max-size frame
		})
		b := n.srv.binary
		put := wire.AppendPut(nil, 1, 0, []byte("big"), make([]byte, 1<<20))

		t.Run("no room: RESOURCE_EXHAUSTED", func(t *testing.T) {
			if !b.buffers.TryAcquire(b.bufCap) {
				t.Fatal("budget in use")
			}
			c := dialRaw(t, n.addr)
			c.write(put)
			r, err := c.next()
			b.buffers.Release(b.bufCap)
			if err != nil {
				t.Fatal(err)
			}
			if r.Op != wire.OpError || r.ID != 0 || r.Status != wire.StatusResourceExhausted || !strings.Contains(string(r.Payload), "max-request-buffer") {
				t.Fatalf("reply op %s id %d %s %q", r.Op, r.ID, r.Status, r.Payload)
			}
			waitClosed(t, c.c, 5*time.Second)
		})

		t.Run("served when the holder goes", func(t *testing.T) {
			// A stalled 4 MB frame reserves nearly the whole budget...
			holder := dialRaw(t, n.addr)
			huge := wire.AppendRequest(nil, &wire.Request{Op: wire.OpBatch, ID: 2, Ops: []wire.BatchOp{{Type: wire.BatchPut, Key: []byte("h"), Value: make([]byte, 4<<20-200)}}})
			holder.write(huge[:1<<20])
			room := b.bufCap - int64(len(huge)) + 64<<10
			for i := 0; i < 500 && b.buffers.TryAcquire(room); i++ {
				b.buffers.Release(room)
				time.Sleep(10 * time.Millisecond) // until the holder's reservation is made
			}
			// ...so a 1 MiB PUT waits, unanswered, while the holder stalls...
			c := dialRaw(t, n.addr)
			c.write(put)
			replied := make(chan error, 1)
			go func() {
				r, err := c.next()
				if err == nil && r.Status != wire.StatusOK {
					err = fmt.Errorf("PUT: %s %q", r.Status, r.Payload)
				}
				replied <- err
			}()
			select {
			case err := <-replied:
				t.Fatalf("PUT answered while the budget was held: %v", err)
			case <-time.After(300 * time.Millisecond):
			}
			// ...and is served once the holder goes.
			holder.c.Close()
			if err := <-replied; err != nil {
				t.Fatal(err)
			}
		})
	})
}
