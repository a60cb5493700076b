package service

import (
	"fmt"
	"testing"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// TestRMWAtHalfMemory fills a node to half its max-memory, then runs the
// Redis read-modify-writes on small keys: under either policy each one
// succeeds and no key is evicted, because each reserves only what it can
// add to memory_usage, not a value of max-value-size.
func TestRMWAtHalfMemory(t *testing.T) {
	const limit = 2 << 20
	for _, policy := range []EvictionPolicy{EvictNone, EvictAllKeysLRU} {
		t.Run(string(policy), func(t *testing.T) {
			n := startNode(t, t.TempDir(), func(c *Config) {
				c.MaxMemory = limit
				c.EvictionPolicy = policy
			})
			ctx := ctxT(t)
			val := make([]byte, 10_000)
			const filled = 110
			for i := range filled {
				if _, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: fmt.Appendf(nil, "fill/%03d", i), Value: val}); err != nil {
					t.Fatal(err)
				}
			}
			used := n.srv.Store().MemoryUsage()
			if used < limit*45/100 || used > limit*55/100 {
				t.Fatalf("memory_usage %d after filling, want about half of %d", used, limit)
			}
			r := dialRESP(t, n.addr)
			r.exchange([]respExchange{
				{"SET d 123", []string{"+OK"}},
				{"EXPIRE d 100", []string{":1"}},
				{"PEXPIRE d 100000", []string{":1"}},
				{"PERSIST d", []string{":1"}},
				{"RENAME d e", []string{"+OK"}},
				{"APPEND e xxxx", []string{":7"}},
				{"APPEND b xxxx", []string{":4"}},
				{"SETRANGE e 0 y", []string{":7"}},
				{"INCR n", []string{":1"}},
				{"INCRBY n 10", []string{":11"}},
				{"INCRBYFLOAT n 1.5", []string{"$4", "12.5"}},
				{"SET e v KEEPTTL", []string{"+OK"}},
				{"DBSIZE", []string{fmt.Sprintf(":%d", filled+3)}},
			})
			if got := n.srv.Store().EvictedKeys(); got != 0 {
				t.Errorf("%d keys evicted at half of max-memory", got)
			}
		})
	}
}
