package service

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// TestVolatileEvictionKeepsKeysWithoutTTL fills a node past its limit under
// each volatile policy with a mix of keys with and without a TTL: only keys
// with a TTL are evicted; once none is left, writes fail with
// RESOURCE_EXHAUSTED and every key without a TTL is still there.
// allkeys-random evicts whatever it draws.
func TestVolatileEvictionKeepsKeysWithoutTTL(t *testing.T) {
	const limit = 48 << 10
	for _, policy := range []EvictionPolicy{EvictVolatileLRU, EvictVolatileTTL, EvictVolatileRandom, EvictAllKeysRandom} {
		t.Run(string(policy), func(t *testing.T) {
			n := startNode(t, t.TempDir(), func(c *Config) {
				c.MaxMemory = limit
				c.EvictionPolicy = policy
			})
			ctx := ctxT(t)
			val := make([]byte, evictTestValue)
			plain := 0
			var err error
			for i := range int(3 * limit / evictTestGrowth) {
				req := &kvdbv1.PutRequest{Key: evictTestKeyName(i), Value: val}
				if i%2 == 0 {
					req.TtlMs = int64(3_600_000 + i)
				}
				if _, err = putRetryingReq(ctx, n.kv, req); err != nil {
					break
				}
				if i%2 != 0 {
					plain++
				}
			}
			if policy == EvictAllKeysRandom {
				if err != nil {
					t.Fatalf("allkeys-random refused a write: %v", err)
				}
				if n.srv.Store().EvictedKeys() == 0 {
					t.Fatal("nothing evicted")
				}
				return
			}
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("writes past every volatile key: %v, want RESOURCE_EXHAUSTED", err)
			}
			if n.srv.Store().EvictedKeys() == 0 {
				t.Fatal("nothing evicted")
			}
			for i := 1; i < 2*plain; i += 2 {
				if _, err := n.kv.Get(ctx, &kvdbv1.GetRequest{Key: evictTestKeyName(i)}); err != nil {
					t.Fatalf("key %d without a TTL: %v", i, err)
				}
			}
			if left := n.srv.Store().KeysWithDeadline(); left > 2 {
				t.Logf("%d keys with a TTL left", left)
			}
		})
	}
}

// putRetryingReq writes req, retrying a few times while the node answers
// RESOURCE_EXHAUSTED (eviction behind); a write that nothing can make room
// for fails after them.
func putRetryingReq(ctx context.Context, kv kvdbv1.KVServiceClient, req *kvdbv1.PutRequest) (int, error) {
	var err error
	for r := range 10 {
		if _, err = kv.Put(ctx, req); status.Code(err) != codes.ResourceExhausted {
			return r, err
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 10, err
}
