package core

import (
	"bytes"
	"context"
	"math"
	"testing"
	"time"

	"github.com/kvdb/kvdb/internal/engine"
	"github.com/kvdb/kvdb/internal/fsm"
)

// TestRMWReservesWhatItCanAdd prepares each read-modify-write against a
// store holding the key (or not), applies it through the state machine, and
// checks the reservation two ways: it covers what the apply added to
// MemoryUsage (so max-memory stays a bound), and it is no more than the
// command can add, computed from the request alone (so a command that adds
// little does not make room for a value of max-value-size).
func TestRMWReservesWhatItCanAdd(t *testing.T) {
	const lease = math.MaxInt64 // the longest varint a tail can hold
	deadline := time.Now().Add(time.Hour).UnixMilli()
	long := bytes.Repeat([]byte("k"), 100)
	val := func(n int) []byte { return bytes.Repeat([]byte("v"), n) }
	ctx := context.Background()
	type prep func(c *Core) (Write, error)
	expire := func(c *Core) (Write, error) { return c.PrepareExpire(ctx, []byte("k"), deadline, ExpireAlways) }
	persist := func(c *Core) (Write, error) { return c.PreparePersist(ctx, []byte("k")) }
	rename := func(src, dst []byte) prep {
		return func(c *Core) (Write, error) { return c.PrepareRename(ctx, src, dst, false) }
	}
	appendV := func(n int) prep {
		return func(c *Core) (Write, error) { return c.PrepareAppend(ctx, []byte("k"), val(n)) }
	}
	setRange := func(off int64, n int) prep {
		return func(c *Core) (Write, error) { return c.PrepareSetRange(ctx, []byte("k"), off, val(n)) }
	}
	incrBy := func(d int64) prep {
		return func(c *Core) (Write, error) { return c.PrepareIncrBy(ctx, []byte("k"), d) }
	}
	incrByFloat := func(d float64) prep {
		return func(c *Core) (Write, error) { return c.PrepareIncrByFloat(ctx, []byte("k"), d) }
	}
	setKeepTTL := func(n int) prep {
		return func(c *Core) (Write, error) { return c.PrepareSetKeepTTL(ctx, []byte("k"), val(n)) }
	}
	put := func(key []byte, n int, deadline, lease int64) engine.Op {
		return engine.Op{Type: engine.OpPut, Key: key, Value: val(n), Deadline: deadline, Lease: lease}
	}
	k := []byte("k")
	tests := []struct {
		name  string
		setup []engine.Op // applied after a grant of lease
		prep  prep
		most  int64 // the most the reservation may be
	}{
		{"expire", []engine.Op{put(k, 1000, 0, 0)}, expire, 32},
		{"expire a key with a lease", []engine.Op{put(k, 7, 0, lease)}, expire, 32},
		{"expire a missing key", nil, expire, 32},
		{"persist", []engine.Op{put(k, 1000, deadline, 0)}, persist, 32},
		{"rename to a longer key", []engine.Op{put(k, 1000, deadline, lease)}, rename(k, long), 99 + 32 + 15},
		{"rename to a shorter key", []engine.Op{put(long, 1000, 0, 0)}, rename(long, k), 32},
		{"rename onto an existing key", []engine.Op{put([]byte("a"), 1000, 0, 0), put([]byte("b"), 3, 0, 0)}, rename([]byte("a"), []byte("b")), 32},
		{"append to a missing key", nil, appendV(4), engine.EntryGrowth(1, 4)},
		{"append to a key with a deadline and lease", []engine.Op{put(k, 1000, deadline, lease)}, appendV(4), engine.EntryGrowth(1, 4)},
		{"setrange a missing key", nil, setRange(100, 1), engine.EntryGrowth(1, 101)},
		{"setrange inside a value", []engine.Op{put(k, 1000, deadline, 0)}, setRange(0, 1), engine.EntryGrowth(1, 1)},
		{"setrange nothing", nil, setRange(100, 0), 0},
		{"incrby a missing key to the longest integer", nil, incrBy(math.MinInt64), engine.EntryGrowth(1, 20)},
		{"incrby a key with a deadline and lease", []engine.Op{{Type: engine.OpPut, Key: k, Value: []byte("9"), Deadline: deadline, Lease: lease}}, incrBy(1), engine.EntryGrowth(1, 20)},
		{"incrbyfloat a missing key to the longest float", nil, incrByFloat(-math.SmallestNonzeroFloat64), engine.EntryGrowth(1, 330)},
		{"set keepttl a missing key", nil, setKeepTTL(100), engine.EntryGrowth(1, 100)},
		{"set keepttl a key with a deadline and lease", []engine.Op{put(k, 1, deadline, lease)}, setKeepTTL(100), engine.EntryGrowth(1, 100)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := engine.New()
			if err := store.ApplyLeaseGrant(1, lease, 3600); err != nil {
				t.Fatal(err)
			}
			if len(tt.setup) > 0 {
				if _, ok := store.Apply(2, tt.setup); !ok {
					t.Fatal("setup not applied")
				}
			}
			c := New(Config{}, store)
			w, err := tt.prep(c)
			if err != nil {
				t.Fatal(err)
			}
			before := store.MemoryUsage()
			r, _ := fsm.New(store, nil, nil).Apply(3, w.data).(fsm.Result)
			if r.Err != nil {
				t.Fatalf("apply: %v", r.Err)
			}
			added := store.MemoryUsage() - before
			t.Logf("reserved %d, added %d", w.grow, added)
			if added > w.grow {
				t.Errorf("the apply added %d bytes, more than the %d reserved", added, w.grow)
			}
			if w.grow > tt.most {
				t.Errorf("reserved %d bytes, more than the %d the command can add", w.grow, tt.most)
			}
		})
	}
}
