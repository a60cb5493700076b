package service

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/raftnode"
)

// testNode is a node serving on a loopback port with a gRPC connection to it.
type testNode struct {
	srv   *Server
	addr  string
	conn  *grpc.ClientConn
	kv    kvdbv1.KVServiceClient
	admin kvdbv1.AdminServiceClient
	done  chan error
}

func startNode(t *testing.T, dir string, mutate func(*Config)) *testNode {
	return startNodeTB(t, dir, mutate, true)
}

func startNodeTB(t testing.TB, dir string, mutate func(*Config), wait bool) *testNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := startOn(t, dir, lis, nodeConfig(dir, mutate))
	if wait {
		waitLeader(t, n)
	}
	return n
}

// nodeConfig is a single node's test configuration with mutate applied.
func nodeConfig(dir string, mutate func(*Config)) Config {
	cfg := Config{
		NodeID:    "node1",
		MemberID:  1,
		ClusterID: 42,
		DataDir:   dir,
		Logger:    testLogger(),
		Raft:      raftnode.Config{TickInterval: 10 * time.Millisecond},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	return cfg
}

// startNodeOn starts a node serving on lis, without waiting for a leader.
func startNodeOn(t testing.TB, dir string, lis net.Listener, mutate func(*Config)) *testNode {
	return startOn(t, dir, lis, nodeConfig(dir, mutate))
}

func startOn(t testing.TB, dir string, lis net.Listener, cfg Config) *testNode {
	t.Helper()
	n, err := tryStartOn(t, lis, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
}

// tryStartOn is startOn for a node that may fail to start: New's error is
// returned and lis closed.
func tryStartOn(t testing.TB, lis net.Listener, cfg Config) (*testNode, error) {
	t.Helper()
	srv, err := New(cfg)
	if err != nil {
		lis.Close()
		return nil, err
	}
	n := &testNode{srv: srv, addr: lis.Addr().String(), done: make(chan error, 1)}
	go func() { n.done <- srv.Serve(lis) }()
	conn, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	n.conn, n.kv, n.admin = conn, kvdbv1.NewKVServiceClient(conn), kvdbv1.NewAdminServiceClient(conn)
	t.Cleanup(func() { n.stop(t) })
	return n, nil
}

func (n *testNode) stop(t testing.TB) {
	if n.srv == nil {
		return
	}
	defer func() { n.srv = nil }()
	n.conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A member removed from its cluster ends with ErrRemoved: expected.
	if err := n.srv.Shutdown(ctx); err != nil && !errors.Is(err, raftnode.ErrRemoved) {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-n.done; err != nil && !errors.Is(err, raftnode.ErrRemoved) {
		t.Errorf("Serve: %v", err)
	}
	n.srv = nil
}

func waitLeader(t testing.TB, n *testNode) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ok, _ := n.srv.ready(); ok {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("node did not become ready")
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestPutGetDeleteRoundTrip(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx := ctxT(t)
	put, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte("user:1"), Value: []byte(`{"name":"John"}`)})
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if put.GetHeader().GetRevision() != 1 || put.GetHeader().GetMemberId() != 1 || put.GetHeader().GetClusterId() != 42 {
		t.Fatalf("put header = %v", put.GetHeader())
	}
	get, err := n.kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte("user:1")})
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if string(get.GetKv().GetValue()) != `{"name":"John"}` || get.GetKv().GetVersion() != 1 || get.GetKv().GetModRevision() != 1 {
		t.Fatalf("get = %v", get.GetKv())
	}
	put2, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte("user:1"), Value: []byte("v2"), PrevKv: true})
	if err != nil {
		t.Fatal(err)
	}
	if string(put2.GetPrevKv().GetValue()) != `{"name":"John"}` {
		t.Fatalf("prev kv = %v", put2.GetPrevKv())
	}
	get, err = n.kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte("user:1"), Consistency: kvdbv1.Consistency_CONSISTENCY_SERIALIZABLE})
	if err != nil {
		t.Fatal(err)
	}
	if get.GetKv().GetVersion() != 2 || get.GetKv().GetCreateRevision() != 1 || get.GetKv().GetModRevision() != 2 {
		t.Fatalf("after second put: %v", get.GetKv())
	}
	del, err := n.kv.Delete(ctx, &kvdbv1.DeleteRequest{Key: []byte("user:1")})
	if err != nil || del.GetDeleted() != 1 {
		t.Fatalf("Delete = %v, %v", del, err)
	}
	if _, err := n.kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte("user:1")}); Code(err).String() != "NotFound" {
		t.Fatalf("Get after delete: %v", err)
	}
	del, err = n.kv.Delete(ctx, &kvdbv1.DeleteRequest{Key: []byte("user:1")})
	if err != nil || del.GetDeleted() != 0 {
		t.Fatalf("Delete missing = %v, %v", del, err)
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("KVDB_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
