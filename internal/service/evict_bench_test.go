package service

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// BenchmarkEvictionPut compares PUT throughput (gRPC, 100 clients over 10
// connections, 16-byte keys, 100-byte values, every key new) on a node far
// under its memory limit with a node held at its limit, where every put
// makes the leader evict. Run with
//
//	go test -run='^$' -bench=EvictionPut -benchtime=200000x -count=3 ./internal/service/
//
// "rejected/op" counts RESOURCE_EXHAUSTED answers (eviction behind) that
// the client retried; the retried put is counted once.
func BenchmarkEvictionPut(b *testing.B) {
	value := make([]byte, evictTestValue)
	for _, bc := range []struct {
		name  string
		limit int64
	}{
		{"under-limit", 1 << 30},
		{"evicting", 8 << 20},
	} {
		b.Run(bc.name, func(b *testing.B) {
			n := startNodeTB(b, b.TempDir(), func(c *Config) { c.MaxMemory = bc.limit; c.Raft.TickInterval = 0 }, true)
			if bc.limit < 1<<30 {
				// Fill to the limit so every measured put evicts.
				ctx := context.Background()
				for i := 0; i < int(bc.limit/evictTestGrowth)+1000; i += 1000 {
					req := &kvdbv1.BatchRequest{}
					for j := i; j < i+1000; j++ {
						req.Ops = append(req.Ops, &kvdbv1.BatchOp{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: fmt.Appendf(nil, "fill/%011d", j), Value: value}}})
					}
					if _, err := putBatchRetrying(ctx, n.kv, req); err != nil {
						b.Fatal(err)
					}
				}
			}
			var rejected atomic.Int64
			runClients(b, n.addr, func(ctx context.Context, c kvdbv1.KVServiceClient, i int) error {
				r, err := putRetrying(ctx, c, evictTestKeyName(i), value)
				rejected.Add(int64(r))
				return err
			})
			b.ReportMetric(float64(rejected.Load())/float64(b.N), "rejected/op")
			b.ReportMetric(float64(n.srv.Store().EvictedKeys())/float64(b.N), "evicted/op")
		})
	}
}

func putBatchRetrying(ctx context.Context, kv kvdbv1.KVServiceClient, req *kvdbv1.BatchRequest) (*kvdbv1.BatchResponse, error) {
	var err error
	for range 200 {
		var r *kvdbv1.BatchResponse
		if r, err = kv.Batch(ctx, req); err == nil {
			return r, nil
		}
	}
	return nil, err
}
