package service

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/wire"
)

// TestAdmissionRejectsOverload holds one binary read in flight on a node
// capped at one request: a second request on either transport gets
// RESOURCE_EXHAUSTED at once, admin calls still work, and once the held
// read completes requests are served again.
func TestAdmissionRejectsOverload(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	n := startNode(t, t.TempDir(), func(c *Config) { c.MaxInFlightRequests = 1 })
	n.srv.core.SetTestHookBeforeReadIndex(func() { once.Do(func() { <-release }) })

	held := dialRaw(t, n.addr)
	held.write(wire.AppendGet(nil, 1, 0, []byte("k"))) // stays in flight

	// Wait until the held read holds the only slot.
	deadline := time.Now().Add(5 * time.Second)
	for n.srv.core.InFlight() != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}

	start := time.Now()
	_, err := n.kv.Put(context.Background(), &kvdbv1.PutRequest{Key: []byte("a"), Value: []byte("1")})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("gRPC put over the cap: %v, want RESOURCE_EXHAUSTED", err)
	}
	other := dialRaw(t, n.addr)
	resp := other.call(&wire.Request{Op: wire.OpPut, ID: 7, Key: []byte("a"), Value: []byte("1")})
	if resp.Status != wire.StatusResourceExhausted || resp.ID != 7 {
		t.Fatalf("binary put over the cap: %s %s (id %d), want RESOURCE_EXHAUSTED", resp.Status, resp.Payload, resp.ID)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("rejections took %v; they must be immediate", el)
	}
	if _, err := n.admin.Status(context.Background(), &kvdbv1.StatusRequest{}); err != nil {
		t.Fatalf("admin Status under overload: %v", err)
	}

	close(release)
	if r, err := held.next(); err != nil || r.ID != 1 || r.Status != wire.StatusNotFound {
		t.Fatalf("held read: %+v %v", r, err)
	}
	if _, err := n.kv.Put(context.Background(), &kvdbv1.PutRequest{Key: []byte("a"), Value: []byte("1")}); err != nil {
		t.Fatalf("gRPC put after the overload: %v", err)
	}
	if resp := other.call(&wire.Request{Op: wire.OpPut, ID: 8, Key: []byte("b"), Value: []byte("2")}); resp.Status != wire.StatusOK {
		t.Fatalf("binary put after the overload: %s %s", resp.Status, resp.Payload)
	}
	if got := n.srv.core.InFlight(); got != 0 {
		t.Fatalf("in flight when idle: %d", got)
	}
}
