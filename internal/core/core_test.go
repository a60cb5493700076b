package core

import (
	"context"
	"errors"
	"testing"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	"github.com/kvdb/kvdb/internal/auth"
	"github.com/kvdb/kvdb/internal/engine"
)

func TestEnterCountsAndCaps(t *testing.T) {
	tests := []struct {
		name     string
		limit    int
		capped   bool
		enters   int
		wantOK   int
		rejected int64
	}{
		{"under the cap", 3, true, 2, 2, 0},
		{"at the cap", 3, true, 3, 3, 0},
		{"over the cap", 3, true, 5, 3, 2},
		{"uncapped calls pass the cap", 3, false, 5, 5, 0},
		{"no cap", -1, true, 100, 100, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(Config{MaxInFlightRequests: tt.limit}, engine.New())
			ok := 0
			for range tt.enters {
				if err := c.Enter(tt.capped); err == nil {
					ok++
				} else if !errors.Is(err, ErrOverloaded) || CodeOf(err) != ResourceExhausted {
					t.Fatalf("refusal %v (%v)", err, CodeOf(err))
				}
			}
			if ok != tt.wantOK || c.Rejected() != tt.rejected || c.InFlight() != int64(ok) {
				t.Fatalf("admitted %d rejected %d in flight %d, want %d %d", ok, c.Rejected(), c.InFlight(), tt.wantOK, tt.rejected)
			}
			for range ok {
				c.Leave(tt.capped)
			}
			if c.InFlight() != 0 || c.capped.Load() != 0 {
				t.Fatalf("after leaving: in flight %d, capped %d", c.InFlight(), c.capped.Load())
			}
		})
	}
}

func TestDrainRefusesNewOperations(t *testing.T) {
	c := New(Config{}, engine.New())
	if err := c.Enter(true); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { c.Drain(context.Background()); close(done) }()
	for !c.draining.Load() {
	}
	if err := c.Enter(false); !errors.Is(err, ErrShuttingDown) || CodeOf(err) != Unavailable {
		t.Fatalf("enter while draining: %v", err)
	}
	c.Leave(true)
	<-done
}

func TestValidationCodes(t *testing.T) {
	c := New(Config{Limits: Limits{MaxKeySize: 4, MaxValueSize: 8, MaxBatchOps: 2, MaxRequestSize: 64, MaxRangeLimit: 10}}, engine.New())
	ctx := context.Background()
	rr := func(key, end string, prefix bool, limit int64) error {
		return c.CheckRange(ctx, &RangeRequest{Key: []byte(key), End: []byte(end), Prefix: prefix, Limit: limit})
	}
	_, putErr := c.PreparePut(ctx, []byte("k"), make([]byte, 9), false)
	_, batchErr := c.PrepareBatch(ctx, []BatchOp{{Key: []byte("a")}, {Key: []byte("b")}, {Key: []byte("c")}})
	_, emptyBatch := c.PrepareBatch(ctx, nil)
	_, delErr := c.PrepareDelete(ctx, []byte("b"), []byte("a"), false, false)
	tests := []struct {
		name string
		err  error
		want Code
	}{
		{"empty key", c.CheckGet(ctx, nil), InvalidArgument},
		{"key over the limit", c.CheckGet(ctx, []byte("12345")), InvalidArgument},
		{"key at the limit", c.CheckGet(ctx, []byte("1234")), OK},
		{"value over the limit", putErr, InvalidArgument},
		{"batch over max ops", batchErr, InvalidArgument},
		{"empty batch", emptyBatch, InvalidArgument},
		{"delete end before key", delErr, InvalidArgument},
		{"range negative limit", rr("a", "", false, -1), InvalidArgument},
		{"range without key", rr("", "z", false, 0), InvalidArgument},
		{"whole keyspace", rr("", "\x00", false, 0), OK},
		{"prefix", rr("ab", "", true, 0), OK},
	}
	for _, tt := range tests {
		if got := CodeOf(tt.err); got != tt.want {
			t.Errorf("%s: %v (%v), want %v", tt.name, got, tt.err, tt.want)
		}
	}
}

func TestPermissionChecks(t *testing.T) {
	users := auth.NewStore()
	auth.SetBcryptCostForTests()
	for _, cmd := range []*raftv1.AuthCommand{
		{Op: raftv1.AuthOp_AUTH_OP_USER_ADD, User: "root"},
		{Op: raftv1.AuthOp_AUTH_OP_USER_ADD, User: "reader"},
		{Op: raftv1.AuthOp_AUTH_OP_ROLE_ADD, Role: "r"},
		{Op: raftv1.AuthOp_AUTH_OP_ROLE_GRANT_PERMISSION, Role: "r", Permission: &raftv1.AuthPermission{Type: uint32(auth.Read), Key: []byte("a"), RangeEnd: []byte("b")}},
		{Op: raftv1.AuthOp_AUTH_OP_USER_GRANT_ROLE, User: "reader", Role: "r"},
		{Op: raftv1.AuthOp_AUTH_OP_ENABLE, TokenSecret: make([]byte, 32)},
	} {
		if err := users.Apply(cmd); err != nil {
			t.Fatal(err)
		}
	}
	c := New(Config{Auth: users}, engine.New())
	anon, reader, root := context.Background(), WithUser(context.Background(), "reader"), WithUser(context.Background(), "root")
	put := func(ctx context.Context, k string) error {
		_, err := c.PreparePut(ctx, []byte(k), nil, false)
		return err
	}
	rng := func(ctx context.Context, k, end string) error {
		return c.CheckRange(ctx, &RangeRequest{Key: []byte(k), End: []byte(end)})
	}
	tests := []struct {
		name string
		err  error
		want Code
	}{
		{"anonymous get", c.CheckGet(anon, []byte("a1")), Unauthenticated},
		{"anonymous put", put(anon, "a1"), Unauthenticated},
		{"reader get inside", c.CheckGet(reader, []byte("a1")), OK},
		{"reader get outside", c.CheckGet(reader, []byte("c")), PermissionDenied},
		{"reader range inside", rng(reader, "a", "az"), OK},
		{"reader range past", rng(reader, "a", "c"), PermissionDenied},
		{"reader put", put(reader, "a1"), PermissionDenied},
		{"reader root call", c.RequireRoot(reader), PermissionDenied},
		{"root put", put(root, "zz"), OK},
		{"root call", c.RequireRoot(root), OK},
	}
	for _, tt := range tests {
		if got := CodeOf(tt.err); got != tt.want {
			t.Errorf("%s: %v (%v), want %v", tt.name, got, tt.err, tt.want)
		}
	}
}

func TestRangeStopsAtTheResponseBudget(t *testing.T) {
	store := engine.New()
	var ops []engine.Op
	for i := range 10 {
		ops = append(ops, engine.Op{Type: engine.OpPut, Key: []byte{'k', byte('0' + i)}, Value: make([]byte, 100)})
	}
	store.Apply(1, ops)
	c := New(Config{Limits: Limits{MaxResponseBytes: 350}}, store)
	tests := []struct {
		name      string
		r         RangeRequest
		wantKVs   int
		wantMore  bool
		wantCount int64
	}{
		{"values fill the budget", RangeRequest{Key: []byte("k"), Prefix: true}, 2, true, 10},
		{"keys only fit", RangeRequest{Key: []byte("k"), Prefix: true, KeysOnly: true}, 8, true, 10},
		{"limit first", RangeRequest{Key: []byte("k"), Prefix: true, Limit: 1}, 1, true, 10},
		{"one key always", RangeRequest{Key: []byte("k0")}, 1, false, 1},
	}
	for _, tt := range tests {
		r := tt.r
		if err := c.CheckRange(context.Background(), &r); err != nil {
			t.Fatal(err)
		}
		got := c.ReadRange(&r)
		if len(got.KVs) != tt.wantKVs || got.More != tt.wantMore || got.Count != tt.wantCount {
			t.Errorf("%s: %d keys, more %v, count %d; want %d %v %d", tt.name, len(got.KVs), got.More, got.Count, tt.wantKVs, tt.wantMore, tt.wantCount)
		}
	}
	// A budget smaller than one key still returns that key.
	c.SetLimits(Limits{MaxResponseBytes: 1, MaxKeySize: 16, MaxValueSize: 1 << 10, MaxBatchOps: 1, MaxRequestSize: 1 << 20, MaxRangeLimit: 10})
	r := RangeRequest{Key: []byte("k"), Prefix: true}
	if err := c.CheckRange(context.Background(), &r); err != nil {
		t.Fatal(err)
	}
	if got := c.ReadRange(&r); len(got.KVs) != 1 || !got.More {
		t.Fatalf("tiny budget: %d keys, more %v", len(got.KVs), got.More)
	}
}
