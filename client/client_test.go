package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/auth"
	"github.com/kvdb/kvdb/internal/service"
	"github.com/kvdb/kvdb/internal/service/servicetest"
	"github.com/kvdb/kvdb/internal/wire"
)

func startNode(t *testing.T) (*service.Server, string) {
	return servicetest.StartServer(t, nil)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestClientOperationsOnBothProtocols(t *testing.T) {
	_, addr := startNode(t)
	for _, proto := range []Protocol{ProtocolGRPC, ProtocolBinary} {
		t.Run(fmt.Sprint(proto), func(t *testing.T) {
			ctx := ctxT(t)
			c, err := New(ctx, Options{Endpoints: []string{addr}, Protocol: proto, PoolSize: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			p := fmt.Sprintf("p%d/", proto)
			rev, err := c.Put(ctx, []byte(p+"a"), []byte("1"))
			if err != nil || rev < 1 {
				t.Fatalf("Put = %d, %v", rev, err)
			}
			kv, err := c.Get(ctx, []byte(p+"a"))
			if err != nil || string(kv.Value) != "1" || kv.ModRevision != rev {
				t.Fatalf("Get = %+v, %v", kv, err)
			}
			if kv, err := c.Get(ctx, []byte(p+"a"), Serializable()); err != nil || string(kv.Value) != "1" {
				t.Fatalf("serializable Get = %+v, %v", kv, err)
			}
			if _, err := c.Get(ctx, []byte(p+"missing")); !errors.Is(err, ErrNotFound) || status.Code(err) != codes.NotFound {
				t.Fatalf("Get missing: %v", err)
			}
			b, err := c.Batch(ctx, []BatchOp{{Key: []byte(p + "b"), Value: []byte("2")}, {Key: []byte(p + "c"), Value: []byte("3")}, {Delete: true, Key: []byte(p + "a")}})
			if err != nil || b.Puts != 2 || b.Deleted != 1 {
				t.Fatalf("Batch = %+v, %v", b, err)
			}
			r, err := c.Range(ctx, []byte(p), RangeOptions{Prefix: true})
			if err != nil || r.Count != 2 || len(r.KVs) != 2 || string(r.KVs[0].Key) != p+"b" {
				t.Fatalf("Range = %+v, %v", r, err)
			}
			if n, err := c.Delete(ctx, []byte(p+"b")); err != nil || n != 1 {
				t.Fatalf("Delete = %d, %v", n, err)
			}
			if err := c.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			st, err := c.Stats(ctx)
			if err != nil || st.GetNetwork().GetActiveConnections() < 1 {
				t.Fatalf("Stats = %v, %v", st, err)
			}
			// The asynchronous API: many calls in flight, each answered.
			var puts []PutFuture
			for i := range 200 {
				puts = append(puts, c.PutAsync(ctx, fmt.Appendf(nil, "%sasync/%03d", p, i), []byte("v")))
			}
			for i, f := range puts {
				if _, err := f.Wait(ctx); err != nil {
					t.Fatalf("PutAsync %d: %v", i, err)
				}
			}
			var gets []GetFuture
			for i := range 200 {
				gets = append(gets, c.GetAsync(ctx, fmt.Appendf(nil, "%sasync/%03d", p, i)))
			}
			for i, f := range gets {
				if kv, err := f.Wait(ctx); err != nil || string(kv.Key) != fmt.Sprintf("%sasync/%03d", p, i) {
					t.Fatalf("GetAsync %d: %+v, %v", i, kv, err)
				}
			}
		})
	}
}

func TestClientPoolSpreadsOverConnections(t *testing.T) {
	srv, addr := startNode(t)
	ctx := ctxT(t)
	before := srv.Stats().GetNetwork().GetActiveConnections()
	c, err := New(ctx, Options{Endpoints: []string{addr}, Protocol: ProtocolBinary, PoolSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 9 {
		if _, err := c.Put(ctx, fmt.Appendf(nil, "k%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	p, _ := c.current()
	for i, b := range p.binary {
		if b.nextID == 0 {
			t.Fatalf("pooled connection %d was never used", i)
		}
	}
	// The discovery probe's gRPC connection may still be closing.
	deadline := time.Now().Add(5 * time.Second)
	for srv.Stats().GetNetwork().GetActiveConnections() != before+3 {
		if time.Now().After(deadline) {
			t.Fatalf("active connections %d, want %d", srv.Stats().GetNetwork().GetActiveConnections(), before+3)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fakeNode is a gRPC server whose answers a test scripts.
type fakeNode struct {
	kvdbv1.UnimplementedKVServiceServer
	kvdbv1.UnimplementedAdminServiceServer
	leader     bool
	gets, puts atomic.Int32
	failGets   int32 // the first failGets Gets fail with UNAVAILABLE
	failPuts   bool
	blockGet   bool
	// abortPuts: the first abortPuts Puts are refused as applied after
	// a permission change; conflictPuts: every Put is ABORTED otherwise.
	abortPuts    int32
	conflictPuts bool
	addr         string
}

func (f *fakeNode) Status(context.Context, *kvdbv1.StatusRequest) (*kvdbv1.StatusResponse, error) {
	return &kvdbv1.StatusResponse{IsLeader: f.leader}, nil
}

func (f *fakeNode) Get(ctx context.Context, req *kvdbv1.GetRequest) (*kvdbv1.GetResponse, error) {
	n := f.gets.Add(1)
	if f.blockGet {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if n <= f.failGets {
		return nil, status.Error(codes.Unavailable, "no leader")
	}
	return &kvdbv1.GetResponse{Kv: &kvdbv1.KeyValue{Key: req.GetKey(), Value: []byte(f.addr)}}, nil
}

func (f *fakeNode) Put(context.Context, *kvdbv1.PutRequest) (*kvdbv1.PutResponse, error) {
	n := f.puts.Add(1)
	if n <= f.abortPuts {
		return nil, status.Error(codes.Aborted, "service: "+auth.ErrOldRevision.Error())
	}
	if f.conflictPuts {
		return nil, status.Error(codes.Aborted, "transaction conflict")
	}
	if f.failPuts {
		return nil, status.Error(codes.Unavailable, "leader changed")
	}
	return &kvdbv1.PutResponse{}, nil
}

func startFake(t *testing.T, f *fakeNode) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	kvdbv1.RegisterKVServiceServer(s, f)
	kvdbv1.RegisterAdminServiceServer(s, f)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	f.addr = lis.Addr().String()
	return f.addr
}

func closedPort(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func TestClientDiscoversLeader(t *testing.T) {
	follower := &fakeNode{}
	leader := &fakeNode{leader: true}
	fa, la := startFake(t, follower), startFake(t, leader)
	ctx := ctxT(t)
	c, err := New(ctx, Options{Endpoints: []string{closedPort(t), fa, la}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Endpoint() != la {
		t.Fatalf("client uses %s, want the leader %s", c.Endpoint(), la)
	}
	kv, err := c.Get(ctx, []byte("k"))
	if err != nil || string(kv.Value) != la {
		t.Fatalf("Get answered by %q (%v), want the leader", kv.Value, err)
	}
	if _, err := New(ctx, Options{Endpoints: []string{closedPort(t)}, DialTimeout: 200 * time.Millisecond}); Code(err) != codes.Unavailable {
		t.Fatalf("no reachable endpoint: %v", err)
	}
}

func TestClientRetriesOnlyIdempotentCalls(t *testing.T) {
	f := &fakeNode{leader: true, failGets: 2, failPuts: true}
	addr := startFake(t, f)
	ctx := ctxT(t)
	c, err := New(ctx, Options{Endpoints: []string{addr}, BackoffBase: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Get(ctx, []byte("k")); err != nil {
		t.Fatalf("Get after two UNAVAILABLE answers: %v", err)
	}
	if got := f.gets.Load(); got != 3 {
		t.Fatalf("Get sent %d times, want 3", got)
	}
	if _, err := c.Put(ctx, []byte("k"), nil); Code(err) != codes.Unavailable {
		t.Fatalf("Put: %v, want UNAVAILABLE", err)
	}
	if got := f.puts.Load(); got != 1 {
		t.Fatalf("Put sent %d times, want exactly 1 (writes are not retried)", got)
	}
}

// TestClientResendsWritesRefusedByAPermissionChange: a write refused
// when applied because the permissions changed in flight was not applied,
// so it is sent again at once; other ABORTED answers are not.
func TestClientResendsWritesRefusedByAPermissionChange(t *testing.T) {
	if !strings.Contains(auth.ErrOldRevision.Error(), oldAuthRevisionText) {
		t.Fatalf("the server's message %q no longer contains %q", auth.ErrOldRevision, oldAuthRevisionText)
	}
	f := &fakeNode{leader: true, abortPuts: 2}
	ctx := ctxT(t)
	c, err := New(ctx, Options{Endpoints: []string{startFake(t, f)}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatalf("Put after two refusals: %v", err)
	}
	if got := f.puts.Load(); got != 3 {
		t.Fatalf("Put sent %d times, want 3", got)
	}

	always := &fakeNode{leader: true, abortPuts: 1 << 30}
	c2, err := New(ctx, Options{Endpoints: []string{startFake(t, always)}, MaxRetries: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Put(ctx, []byte("k"), nil); !notApplied(err) {
		t.Fatalf("Put refused every time: %v", err)
	}
	if got := always.puts.Load(); got != 4 {
		t.Fatalf("Put refused every time was sent %d times, want 1 + MaxRetries (4)", got)
	}

	conflict := &fakeNode{leader: true, conflictPuts: true}
	c3, err := New(ctx, Options{Endpoints: []string{startFake(t, conflict)}})
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if _, err := c3.Put(ctx, []byte("k"), nil); Code(err) != codes.Aborted {
		t.Fatalf("Put: %v, want ABORTED", err)
	}
	if got := conflict.puts.Load(); got != 1 {
		t.Fatalf("a conflict was sent %d times, want once", got)
	}
}

func TestClientDeadlines(t *testing.T) {
	t.Run("grpc", func(t *testing.T) {
		f := &fakeNode{leader: true, blockGet: true}
		addr := startFake(t, f)
		c, err := New(ctxT(t), Options{Endpoints: []string{addr}, RequestTimeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Get(context.Background(), []byte("k")); Code(err) != codes.DeadlineExceeded {
			t.Fatalf("Get without deadline: %v, want DEADLINE_EXCEEDED from RequestTimeout", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if _, err := c.Get(ctx, []byte("k")); Code(err) != codes.DeadlineExceeded {
			t.Fatalf("Get with deadline: %v", err)
		}
	})
	t.Run("binary", func(t *testing.T) {
		// A binary server that completes the handshake and never answers.
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer lis.Close()
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			var hello [wire.ClientHelloSize]byte
			io.ReadFull(conn, hello[:])
			conn.Write(wire.AppendServerHello(nil, wire.ServerHello{Version: wire.Version}))
			io.Copy(io.Discard, conn)
		}()
		b, err := dialBinary(ctxT(t), lis.Addr().String(), &dialer{})
		if err != nil {
			t.Fatal(err)
		}
		c := &Client{opts: Options{RequestTimeout: 100 * time.Millisecond}, pool: &pool{addr: lis.Addr().String(), binary: []*binaryConn{b}}}
		c.opts.setDefaults()
		c.opts.RequestTimeout = 100 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if _, err := c.Get(ctx, []byte("k")); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get: %v, want the context's deadline", err)
		}
		if _, err := c.Put(context.Background(), []byte("k"), nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Put without deadline: %v, want RequestTimeout", err)
		}
		if len(b.pending) != 0 {
			t.Fatalf("%d abandoned calls still pending", len(b.pending))
		}
		c.Close()
	})
}
