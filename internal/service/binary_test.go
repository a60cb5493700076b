package service

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/wire"
)

// rawConn is a bare binary-protocol connection for tests: frames are
// written as given and replies read one by one.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	rd *wire.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(wire.AppendClientHello(nil, wire.Version)); err != nil {
		t.Fatal(err)
	}
	var hello [wire.ServerHelloSize]byte
	if _, err := io.ReadFull(c, hello[:]); err != nil {
		t.Fatalf("server hello: %v", err)
	}
	if _, err := wire.ParseServerHello(hello[:]); err != nil {
		t.Fatalf("server hello: %v", err)
	}
	return &rawConn{t: t, c: c, rd: wire.NewReader(c, 4096, wire.MaxResponseFrameSize)}
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) next() (*wire.Response, error) {
	f, err := r.rd.Next()
	if err != nil {
		return nil, err
	}
	resp := &wire.Response{}
	if err := wire.DecodeResponse(f, resp); err != nil {
		return nil, err
	}
	// Detach from the reader's buffer.
	b := wire.AppendResponse(nil, resp)
	f, _ = wire.ParseFrame(b, len(b))
	out := &wire.Response{}
	_ = wire.DecodeResponse(f, out)
	return out, nil
}

func (r *rawConn) call(req *wire.Request) *wire.Response {
	r.t.Helper()
	r.write(wire.AppendRequest(nil, req))
	resp, err := r.next()
	if err != nil {
		r.t.Fatalf("%s: %v", req.Op, err)
	}
	if resp.ID != req.ID || resp.Op != req.Op {
		r.t.Fatalf("reply %s/%d to request %s/%d", resp.Op, resp.ID, req.Op, req.ID)
	}
	return resp
}

func TestBinaryEveryOpcode(t *testing.T) {
	connModes(t, func(t *testing.T, mode func(*Config)) {
		n := startNode(t, t.TempDir(), mode)
		c := dialRaw(t, n.addr)
		if r := c.call(&wire.Request{Op: wire.OpPing, ID: 1, Payload: []byte("hi")}); string(r.Payload) != "hi" {
			t.Fatalf("PING = %+v", r)
		}
		if r := c.call(&wire.Request{Op: wire.OpPut, ID: 2, Key: []byte("a"), Value: []byte("1")}); r.Status != wire.StatusOK || r.Revision != 1 {
			t.Fatalf("PUT = %+v", r)
		}
		r := c.call(&wire.Request{Op: wire.OpPut, ID: 3, Flags: wire.FlagPrevKV, Key: []byte("a"), Value: []byte("2")})
		if r.Flags&wire.FlagHasPrevKV == 0 || string(r.KV.Value) != "1" || r.Revision != 2 {
			t.Fatalf("PUT prev = %+v", r)
		}
		for _, flags := range []uint8{0, wire.FlagSerializable} {
			r = c.call(&wire.Request{Op: wire.OpGet, ID: 4, Flags: flags, Key: []byte("a")})
			if r.Status != wire.StatusOK || string(r.KV.Value) != "2" || r.KV.Version != 2 || r.KV.CreateRevision != 1 || r.Revision != 2 {
				t.Fatalf("GET = %+v", r)
			}
		}
		if r := c.call(&wire.Request{Op: wire.OpGet, ID: 5, Key: []byte("missing")}); r.Status != wire.StatusNotFound {
			t.Fatalf("GET missing = %+v", r)
		}
		if r := c.call(&wire.Request{Op: wire.OpGet, ID: 6}); r.Status != wire.StatusInvalidArgument {
			t.Fatalf("GET empty key = %+v", r)
		}
		r = c.call(&wire.Request{Op: wire.OpBatch, ID: 7, Ops: []wire.BatchOp{
			{Type: wire.BatchPut, Key: []byte("b1"), Value: []byte("x")},
			{Type: wire.BatchPut, Key: []byte("b2"), Value: []byte("y")},
			{Type: wire.BatchDelete, Key: []byte("a")},
		}})
		if r.Status != wire.StatusOK || r.Puts != 2 || r.Deleted != 1 || r.Revision != 3 {
			t.Fatalf("BATCH = %+v", r)
		}
		r = c.call(&wire.Request{Op: wire.OpRange, ID: 8, Flags: wire.FlagPrefix, Key: []byte("b")})
		if r.Status != wire.StatusOK || r.Count != 2 || len(r.KVs) != 2 || string(r.KVs[1].Value) != "y" {
			t.Fatalf("RANGE = %+v", r)
		}
		r = c.call(&wire.Request{Op: wire.OpRange, ID: 9, Key: []byte("b"), End: []byte{0}, Limit: 1, Flags: wire.FlagKeysOnly})
		if r.Count != 2 || !r.More || len(r.KVs) != 1 || len(r.KVs[0].Value) != 0 {
			t.Fatalf("RANGE limit = %+v", r)
		}
		r = c.call(&wire.Request{Op: wire.OpDelete, ID: 10, Flags: wire.FlagPrefix | wire.FlagPrevKV, Key: []byte("b")})
		if r.Status != wire.StatusOK || r.Deleted != 2 || len(r.KVs) != 2 {
			t.Fatalf("DELETE = %+v", r)
		}
		r = c.call(&wire.Request{Op: wire.OpStats, ID: 11})
		var stats struct {
			Network struct {
				ActiveConnections json.Number `json:"active_connections"`
			} `json:"network"`
		}
		if err := json.Unmarshal(r.Payload, &stats); err != nil || stats.Network.ActiveConnections == "" || stats.Network.ActiveConnections == "0" {
			t.Fatalf("STATS = %s (%v)", r.Payload, err)
		}
		// Connection-scoped transactions: COMMIT without BEGIN is refused,
		// BEGIN / IN_TXN ops / COMMIT apply atomically, ROLLBACK discards, and
		// TXN is compare-and-swap.
		if r := c.call(&wire.Request{Op: wire.OpCommit, ID: 12}); r.Status != wire.StatusFailedPrecondition {
			t.Fatalf("COMMIT without BEGIN = %+v", r)
		}
		if r := c.call(&wire.Request{Op: wire.OpBegin, ID: 13}); r.Status != wire.StatusOK || r.TxnID != 1 {
			t.Fatalf("BEGIN = %+v", r)
		}
		if r := c.call(&wire.Request{Op: wire.OpBegin, ID: 14}); r.Status != wire.StatusFailedPrecondition {
			t.Fatalf("second BEGIN = %+v", r)
		}
		if r := c.call(&wire.Request{Op: wire.OpPut, ID: 15, Flags: wire.FlagInTxn, Key: []byte("t1"), Value: []byte("v1")}); r.Status != wire.StatusOK {
			t.Fatalf("PUT in txn = %+v", r)
		}
		if r := c.call(&wire.Request{Op: wire.OpGet, ID: 16, Flags: wire.FlagInTxn, Key: []byte("t1")}); r.Status != wire.StatusOK || string(r.KV.Value) != "v1" {
			t.Fatalf("GET in txn (read-your-writes) = %+v", r)
		}
		if r := c.call(&wire.Request{Op: wire.OpGet, ID: 17, Key: []byte("t1")}); r.Status != wire.StatusNotFound {
			t.Fatalf("GET outside the txn before COMMIT = %+v", r)
		}
		if r := c.call(&wire.Request{Op: wire.OpCommit, ID: 18}); r.Status != wire.StatusOK || r.Revision == 0 {
			t.Fatalf("COMMIT = %+v", r)
		}
		if r := c.call(&wire.Request{Op: wire.OpGet, ID: 19, Key: []byte("t1")}); r.Status != wire.StatusOK || string(r.KV.Value) != "v1" {
			t.Fatalf("GET after COMMIT = %+v", r)
		}
		c.call(&wire.Request{Op: wire.OpBegin, ID: 20})
		c.call(&wire.Request{Op: wire.OpPut, ID: 21, Flags: wire.FlagInTxn, Key: []byte("t2"), Value: []byte("v")})
		if r := c.call(&wire.Request{Op: wire.OpRollback, ID: 22}); r.Status != wire.StatusOK {
			t.Fatalf("ROLLBACK = %+v", r)
		}
		if r := c.call(&wire.Request{Op: wire.OpGet, ID: 23, Key: []byte("t2")}); r.Status != wire.StatusNotFound {
			t.Fatalf("rolled-back write visible: %+v", r)
		}
		cas := func(id uint64, expect string) *wire.Response {
			return c.call(&wire.Request{Op: wire.OpTxn, ID: id,
				Compares: []wire.Compare{{Key: []byte("t1"), Target: wire.TargetValue, Result: wire.CompareEqual, Value: []byte(expect)}},
				Ops:      []wire.BatchOp{{Type: wire.BatchPut, Key: []byte("t1"), Value: []byte("swapped")}},
				Failure:  []wire.BatchOp{{Type: wire.BatchPut, Key: []byte("cas-failed"), Value: []byte("1")}}})
		}
		if r := cas(24, "nope"); r.Status != wire.StatusOK || r.Succeeded {
			t.Fatalf("TXN with a false compare = %+v", r)
		}
		if r := cas(25, "v1"); r.Status != wire.StatusOK || !r.Succeeded {
			t.Fatalf("TXN = %+v", r)
		}
		if r := c.call(&wire.Request{Op: wire.OpGet, ID: 26, Key: []byte("t1")}); string(r.KV.Value) != "swapped" {
			t.Fatalf("after TXN: %+v", r)
		}
		if r := c.call(&wire.Request{Op: wire.OpGet, ID: 27, Key: []byte("cas-failed")}); r.Status != wire.StatusOK {
			t.Fatalf("failure branch not applied: %+v", r)
		}
		// A branch that writes one key twice is refused, as gRPC's Execute
		// refuses it, and nothing is applied.
		for i, branch := range [][]wire.BatchOp{
			{{Type: wire.BatchPut, Key: []byte("d"), Value: []byte("1")}, {Type: wire.BatchPut, Key: []byte("d"), Value: []byte("2")}},
			{{Type: wire.BatchPut, Key: []byte("d"), Value: []byte("1")}, {Type: wire.BatchDelete, Key: []byte("d")}},
		} {
			r := c.call(&wire.Request{Op: wire.OpTxn, ID: 28 + uint64(i), Ops: branch})
			if r.Status != wire.StatusInvalidArgument || !strings.Contains(string(r.Payload), "success ops 0 and 1") {
				t.Fatalf("TXN writing key d twice = %+v", r)
			}
			r = c.call(&wire.Request{Op: wire.OpTxn, ID: 30 + uint64(i), Compares: []wire.Compare{{Key: []byte("t1"), Target: wire.TargetValue, Result: wire.CompareEqual, Value: []byte("nope")}}, Failure: branch})
			if r.Status != wire.StatusInvalidArgument || !strings.Contains(string(r.Payload), "failure ops 0 and 1") {
				t.Fatalf("TXN writing key d twice on failure = %+v", r)
			}
		}
		if r := c.call(&wire.Request{Op: wire.OpGet, ID: 32, Key: []byte("d")}); r.Status != wire.StatusNotFound {
			t.Fatalf("a refused TXN wrote: %+v", r)
		}
		// Binary requests are counted in STATS like gRPC ones.
		st := n.srv.Stats()
		if st.GetMetrics().GetOperations()["PUT"].GetCount() != 2 || st.GetMetrics().GetOperations()["GET"].GetCount() < 6 {
			t.Fatalf("op stats = %v", st.GetMetrics().GetOperations())
		}
	})
}

// TestBinaryPipeliningOutOfOrder: a linearizable read held at its read
// index does not hold back the replies of requests sent after it; replies
// are matched by request id.
func TestBinaryPipeliningOutOfOrder(t *testing.T) {
	connModes(t, func(t *testing.T, mode func(*Config)) {
		release := make(chan struct{})
		var once sync.Once
		n := startNode(t, t.TempDir(), mode)
		n.srv.core.SetTestHookBeforeReadIndex(func() { once.Do(func() { <-release }) })
		c := dialRaw(t, n.addr)
		c.call(&wire.Request{Op: wire.OpPut, ID: 1, Key: []byte("k"), Value: []byte("v")})

		var batch []byte
		batch = wire.AppendGet(batch, 100, 0, []byte("k")) // held
		for i := uint64(101); i < 110; i++ {
			batch = wire.AppendGet(batch, i, wire.FlagSerializable, []byte("k"))
		}
		batch = wire.AppendPut(batch, 110, 0, []byte("k2"), []byte("v2"))
		c.write(batch)
		seen := map[uint64]bool{}
		for len(seen) < 10 {
			r, err := c.next()
			if err != nil {
				t.Fatal(err)
			}
			if r.ID == 100 {
				t.Fatal("the held read answered before the others")
			}
			if r.Status != wire.StatusOK {
				t.Fatalf("reply %d: %s %s", r.ID, r.Status, r.Payload)
			}
			seen[r.ID] = true
		}
		close(release)
		r, err := c.next()
		if err != nil || r.ID != 100 || string(r.KV.Value) != "v" {
			t.Fatalf("held read: %+v, %v", r, err)
		}
	})
}

func TestBinaryMalformedInput(t *testing.T) {
	connModes(t, func(t *testing.T, mode func(*Config)) {
		n := startNode(t, t.TempDir(), mode)
		good := wire.AppendGet(nil, 1, wire.FlagSerializable, []byte("k"))
		cases := []struct {
			name string
			send []byte
			// replies expected before the connection closes (status per reply);
			// closes says whether the server closes the connection afterwards.
			want   []wire.Status
			closes bool
		}{
			{"truncated frame then EOF", good[:len(good)-2], nil, true},
			{"huge length", []byte{0x7f, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, []wire.Status{wire.StatusResourceExhausted}, true},
			{"length below header", []byte{0, 0, 0, 2, 2, 0}, []wire.Status{wire.StatusInvalidArgument}, true},
			{"unknown opcode", append(wire.AppendRequest(nil, &wire.Request{Op: 0x55, ID: 9}), good...), []wire.Status{wire.StatusUnimplemented, wire.StatusNotFound}, false},
			{"malformed body", func() []byte {
				b := wire.AppendGet(nil, 3, 0, []byte("ab"))
				b[4] = byte(wire.OpRange) // a 2-byte RANGE body cannot hold its key length
				return b
			}(), []wire.Status{wire.StatusInvalidArgument}, true},
			{"bad body lengths", func() []byte {
				b := wire.AppendRequest(nil, &wire.Request{Op: wire.OpPut, ID: 4, Key: []byte("k"), Value: []byte("v")})
				b[wire.HeaderSize] = 0xff // key length past the body
				return b
			}(), []wire.Status{wire.StatusInvalidArgument}, true},
			{"garbage after a good frame", append(bytes.Clone(good), []byte("GARBAGE GARBAGE GARBAGE")...), []wire.Status{wire.StatusNotFound, wire.StatusResourceExhausted}, true},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := dialRaw(t, n.addr)
				c.write(tc.send)
				if tc.name == "truncated frame then EOF" {
					_ = c.c.(*net.TCPConn).CloseWrite()
				}
				for i, st := range tc.want {
					r, err := c.next()
					if err != nil {
						t.Fatalf("reply %d: %v", i, err)
					}
					if r.Status != st {
						t.Fatalf("reply %d: status %s (%s), want %s", i, r.Status, r.Payload, st)
					}
				}
				if tc.closes {
					if _, err := c.next(); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
						t.Fatalf("after the error reply: %v, want the connection closed", err)
					}
				}
				// The server is still up.
				if r := dialRaw(t, n.addr).call(&wire.Request{Op: wire.OpPing, ID: 1}); r.Status != wire.StatusOK {
					t.Fatalf("PING after malformed input: %+v", r)
				}
			})
		}
		t.Run("bad version", func(t *testing.T) {
			c, err := net.Dial("tcp", n.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write(wire.AppendClientHello(nil, 99))
			var hello [wire.ServerHelloSize]byte
			if _, err := io.ReadFull(c, hello[:]); err != nil {
				t.Fatal(err)
			}
			if h, err := wire.ParseServerHello(hello[:]); !errors.Is(err, wire.ErrBadVersion) || h.Version != wire.Version {
				t.Fatalf("hello %+v, %v", h, err)
			}
			if _, err := c.Read(hello[:]); !errors.Is(err, io.EOF) {
				t.Fatalf("after refusing the version: %v", err)
			}
		})
	})
}

// raiseFileLimit lifts this process's soft RLIMIT_NOFILE to the hard limit
// (both ends of every test connection live in this process).
func raiseFileLimit(t *testing.T, need uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	if lim.Cur < need {
		lim.Cur = min(need, lim.Max)
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	if lim.Cur < need {
		t.Skipf("RLIMIT_NOFILE is %d, need %d", lim.Cur, need)
	}
}

// TestBinaryThousandConnections: 1,000 connections at once, each
// pipelining a mix of writes and reads on its own keys; every answer is
// checked.
func TestBinaryThousandConnections(t *testing.T) {
	const conns = 1000
	raiseFileLimit(t, 2*conns+256)
	n := startNode(t, t.TempDir(), nil)
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- connWorkload(t, n.addr, i)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := n.srv.Store().Len(); got != conns*2 {
		t.Fatalf("store holds %d keys, want %d", got, conns*2)
	}
}

func connWorkload(t *testing.T, addr string, i int) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	k1, k2, k3 := fmt.Appendf(nil, "c%04d/a", i), fmt.Appendf(nil, "c%04d/b", i), fmt.Appendf(nil, "c%04d/c", i)
	v := fmt.Appendf(nil, "value-%d", i)
	// Round 1, pipelined: three puts. Round 2: reads, a delete, a range.
	b := wire.AppendClientHello(nil, wire.Version)
	b = wire.AppendPut(b, 1, 0, k1, v)
	b = wire.AppendPut(b, 2, 0, k2, v)
	b = wire.AppendRequest(b, &wire.Request{Op: wire.OpBatch, ID: 3, Ops: []wire.BatchOp{{Type: wire.BatchPut, Key: k3, Value: v}}})
	if _, err := c.Write(b); err != nil {
		return err
	}
	var hello [wire.ServerHelloSize]byte
	if _, err := io.ReadFull(c, hello[:]); err != nil {
		return fmt.Errorf("conn %d hello: %w", i, err)
	}
	rd := wire.NewReader(c, 4096, wire.MaxResponseFrameSize)
	var resp wire.Response
	expect := func(count int, check func(*wire.Response) error) error {
		for range count {
			f, err := rd.Next()
			if err != nil {
				return fmt.Errorf("conn %d: %w", i, err)
			}
			if err := wire.DecodeResponse(f, &resp); err != nil {
				return err
			}
			if err := check(&resp); err != nil {
				return fmt.Errorf("conn %d reply %d: %w", i, resp.ID, err)
			}
		}
		return nil
	}
	if err := expect(3, func(r *wire.Response) error {
		if r.Status != wire.StatusOK || r.Revision < 1 {
			return fmt.Errorf("write failed: %s %s", r.Status, r.Payload)
		}
		return nil
	}); err != nil {
		return err
	}
	b = wire.AppendGet(b[:0], 10, 0, k1)
	b = wire.AppendGet(b, 11, wire.FlagSerializable, k3)
	b = wire.AppendRequest(b, &wire.Request{Op: wire.OpDelete, ID: 12, Key: k2})
	b = wire.AppendRequest(b, &wire.Request{Op: wire.OpRange, ID: 13, Flags: wire.FlagPrefix | wire.FlagCountOnly, Key: fmt.Appendf(nil, "c%04d/", i)})
	if _, err := c.Write(b); err != nil {
		return err
	}
	return expect(4, func(r *wire.Response) error {
		if r.Status != wire.StatusOK {
			return fmt.Errorf("%s: %s %s", r.Op, r.Status, r.Payload)
		}
		switch r.ID {
		case 10, 11:
			if !bytes.Equal(r.KV.Value, v) {
				return fmt.Errorf("GET = %q, want %q", r.KV.Value, v)
			}
		case 12:
			if r.Deleted != 1 {
				return fmt.Errorf("DELETE removed %d", r.Deleted)
			}
		case 13:
			// The range may run before or after the pipelined delete.
			if r.Count != 2 && r.Count != 3 {
				return fmt.Errorf("RANGE count %d", r.Count)
			}
		}
		return nil
	})
}

// TestBinaryReplyBacklogBounded: a client that pipelines requests and
// never reads their replies is closed once the replies waiting for the
// socket pass maxReplyBacklog: a request's slot is freed when its reply is
// buffered, so the in-flight cap alone would let them grow to 1,024 large
// replies. Linearizable reads on a follower, answered together on their
// ReadIndex, stop appending at the bound too. (An event loop answering
// reads inline stops reading requests while the socket does not take its
// replies, so it needs no bound.)
func TestBinaryReplyBacklogBounded(t *testing.T) {
	defer func(n int) { maxReplyBacklog = n }(maxReplyBacklog)
	maxReplyBacklog = 1 << 20
	value := bytes.Repeat([]byte("v"), 100<<10)
	unread := func(t *testing.T, addr string) {
		c := dialRaw(t, addr)
		// 200 ranges of 400 KB each (80 MB of replies), never read.
		var reqs []byte
		for i := range 200 {
			reqs = wire.AppendRequest(reqs, &wire.Request{Op: wire.OpRange, ID: uint64(100 + i), Flags: wire.FlagPrefix, Key: []byte("big/")})
		}
		if _, err := c.c.Write(reqs); err != nil {
			t.Fatal(err)
		}
		// Let the node answer into its buffers while nothing is read,
		// then read what it sends until it closes the connection.
		time.Sleep(time.Second)
		got, err := io.Copy(io.Discard, c.c)
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		if got >= 40<<20 {
			t.Fatalf("read %d bytes of replies: the connection was not closed at the backlog bound", got)
		}
		// The node goes on serving others.
		if r := dialRaw(t, addr).call(&wire.Request{Op: wire.OpGet, ID: 1, Key: []byte("big/0"), Flags: wire.FlagSerializable}); r.Status != wire.StatusOK {
			t.Fatalf("another client after: %+v", r)
		}
	}
	t.Run("one node, reads answered on the connection's goroutine", func(t *testing.T) {
		n := startNode(t, t.TempDir(), func(c *Config) { c.EventLoops = -1 })
		c := dialRaw(t, n.addr)
		for i := range 4 {
			if r := c.call(&wire.Request{Op: wire.OpPut, ID: uint64(i + 1), Key: fmt.Appendf(nil, "big/%d", i), Value: value}); r.Status != wire.StatusOK {
				t.Fatalf("put: %+v", r)
			}
		}
		unread(t, n.addr)
	})
	connModes(t, func(t *testing.T, mode func(*Config)) {
		c := newCluster(t, 3, mode)
		l := c.waitLeader()
		for i := range 4 {
			if _, err := c.kv(l).Put(ctxT(t), &kvdbv1.PutRequest{Key: fmt.Appendf(nil, "big/%d", i), Value: value}); err != nil {
				t.Fatal(err)
			}
		}
		f := (l + 1) % 3
		c.waitConverged()
		unread(t, c.nodes[f].addr)
	})
}
