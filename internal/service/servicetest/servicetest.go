// Package servicetest starts an in-process single KVDB node on loopback for
// tests of packages that talk to a node (the bench loop, kvdbctl). The
// node's data lives in the test's temporary directory and it is shut down by
// the test's cleanup.
package servicetest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/raftnode"
	"github.com/kvdb/kvdb/internal/service"
)

// Start serves a standalone node on 127.0.0.1 and returns its address once
// it leads. mutate, when set, adjusts the configuration first.
func Start(t testing.TB, mutate func(*service.Config)) string {
	t.Helper()
	_, addr := StartServer(t, mutate)
	return addr
}

// Serve serves a node made from cfg on 127.0.0.1 until the test's cleanup
// shuts it down, and returns it and its address at once (it may not lead
// yet).
func Serve(t testing.TB, cfg service.Config) (*service.Server, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := service.New(cfg)
	if err != nil {
		t.Fatalf("service.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		<-done
	})
	return srv, lis.Addr().String()
}

// StartServer is Start returning the server too, for tests that look inside.
func StartServer(t testing.TB, mutate func(*service.Config)) (*service.Server, string) {
	t.Helper()
	cfg := service.Config{
		NodeID: "node1", MemberID: 1, ClusterID: 42,
		DataDir: t.TempDir(),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Raft:    raftnode.Config{TickInterval: 10 * time.Millisecond},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, addr := Serve(t, cfg)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	admin := kvdbv1.NewAdminServiceClient(conn)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := admin.Status(ctx, &kvdbv1.StatusRequest{})
		cancel()
		if err == nil && st.GetIsLeader() && st.GetAppliedIndex() >= st.GetCommitIndex() {
			// Leave no connection of ours behind: tests count them.
			conn.Close()
			for end := time.Now().Add(5 * time.Second); srv.Stats().GetNetwork().GetActiveConnections() > 0 && time.Now().Before(end); {
				time.Sleep(5 * time.Millisecond)
			}
			return srv, addr
		}
	}
	t.Fatal("node did not become leader within 10s")
	return nil, ""
}
