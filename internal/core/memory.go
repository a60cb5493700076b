package core

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/kvdb/kvdb/internal/command"
	"github.com/kvdb/kvdb/internal/engine"
	"github.com/kvdb/kvdb/internal/raftnode"
)

func formatID(id uint64) string { return strconv.FormatUint(id, 16) }

// EvictionPolicy says what a node does when a write would pass MaxMemory.
type EvictionPolicy string

const (
	// EvictAllKeysLRU (the default) lets the leader evict the least recently
	// used keys, chosen by sampling, through the raft log.
	EvictAllKeysLRU EvictionPolicy = "allkeys-lru"
	// EvictNone rejects writes that would pass the limit with
	// RESOURCE_EXHAUSTED and never removes a key.
	EvictNone EvictionPolicy = "noeviction"
	// EvictVolatileLRU evicts the least recently used keys among those
	// with a TTL; it never evicts a key without one.
	EvictVolatileLRU EvictionPolicy = "volatile-lru"
	// EvictVolatileTTL evicts the keys with the nearest deadline.
	EvictVolatileTTL EvictionPolicy = "volatile-ttl"
	// EvictAllKeysRandom evicts random keys.
	EvictAllKeysRandom EvictionPolicy = "allkeys-random"
	// EvictVolatileRandom evicts random keys among those with a TTL.
	EvictVolatileRandom EvictionPolicy = "volatile-random"
)

// evictPolicies maps each policy that evicts to the engine's sampling.
var evictPolicies = map[EvictionPolicy]engine.EvictPolicy{
	EvictAllKeysLRU:     engine.EvictAllKeysLRU,
	EvictVolatileLRU:    engine.EvictVolatileLRU,
	EvictVolatileTTL:    engine.EvictVolatileTTL,
	EvictAllKeysRandom:  engine.EvictAllKeysRandom,
	EvictVolatileRandom: engine.EvictVolatileRandom,
}

// ParseEvictionPolicy accepts allkeys-lru, volatile-lru, volatile-ttl,
// allkeys-random, volatile-random and noeviction; "" is the default.
func ParseEvictionPolicy(s string) (EvictionPolicy, error) {
	p := EvictionPolicy(s)
	if p == "" {
		return EvictAllKeysLRU, nil
	}
	if _, ok := evictPolicies[p]; ok || p == EvictNone {
		return p, nil
	}
	return "", fmt.Errorf("unknown eviction policy %q (want allkeys-lru, volatile-lru, volatile-ttl, allkeys-random, volatile-random or noeviction)", s)
}

// Eviction tuning. One cycle proposes at most evictMaxKeys keys in one
// entry (about 30 bytes of log per 16-byte key); one wake-up of the driver
// runs at most evictMaxCycles cycles before it looks at its channels again.
const (
	evictMaxKeys   = 2048
	evictMaxCycles = 64
	evictInterval  = 50 * time.Millisecond
	// admitWaits bounds how often a write waits for eviction to make room
	// before it fails with ErrMemoryLimit; each wait ends at the next
	// applied eviction or after admitWaitStep.
	admitWaits    = 40
	admitWaitStep = 10 * time.Millisecond
)

// memoryGuard admits writes against MaxMemory. A write reserves the bytes it
// may add (pending) until it has been applied, so concurrent writes cannot
// pass the check together: on the node that admitted them, MemoryUsage plus
// the reservations never exceeds the limit. An open interactive transaction
// reserves what it records and buffers until it ends (txnManager.charge).
// Its methods are safe for concurrent use.
type memoryGuard struct {
	store   *engine.Store
	limit   int64 // 0: no limit
	policy  EvictionPolicy
	pending atomic.Int64
	kick    chan struct{} // wakes the eviction driver; buffered 1

	mu    sync.Mutex
	freed chan struct{} // closed (and replaced) when an eviction is applied
}

func newMemoryGuard(store *engine.Store, limit int64, policy EvictionPolicy) *memoryGuard {
	return &memoryGuard{store: store, limit: limit, policy: policy, kick: make(chan struct{}, 1), freed: make(chan struct{})}
}

// lowWater is where eviction starts and what it evicts down to: a
// sixteenth below the limit, so the leader frees room before writers have
// to wait for it.
func (g *memoryGuard) lowWater() int64 { return g.limit - g.limit/16 }

// entryGrowth is the most a put of key and value can add to MemoryUsage.
func entryGrowth(key, value []byte) int64 {
	return engine.EntryGrowth(len(key), len(value))
}

// admit reserves grow bytes for a write, or fails with ErrMemoryLimit. With
// EvictNone it fails at once when the write would pass the limit; with
// EvictAllKeysLRU it wakes the eviction driver and waits (boundedly) for an
// eviction to make room, so only a write that eviction cannot keep up with
// fails. A write that adds nothing (grow <= 0: deletes) is always admitted.
// It returns what it reserved, which release must be given exactly once,
// when the write is applied or failed.
func (g *memoryGuard) admit(ctx context.Context, stopC <-chan struct{}, grow int64) (held int64, err error) {
	if g.limit <= 0 || grow <= 0 {
		return 0, nil
	}
	if grow > g.limit {
		return 0, fmt.Errorf("%w: the write needs up to %d bytes, more than max-memory (%d bytes)", ErrMemoryLimit, grow, g.limit)
	}
	for wait := 0; ; wait++ {
		used := g.store.MemoryUsage()
		p := g.pending.Add(grow)
		if used+p > g.lowWater() {
			g.wake()
		}
		if used+p <= g.limit {
			return grow, nil
		}
		others := g.pending.Add(-grow)
		if g.policy == EvictNone {
			return 0, fmt.Errorf("%w: %d of %d bytes used, %d reserved by writes in flight and open transactions, and policy %s", ErrMemoryLimit, used, g.limit, others, EvictNone)
		}
		if wait == admitWaits {
			return 0, fmt.Errorf("%w: %d of %d bytes used, %d reserved by writes in flight and open transactions, and eviction is behind; retry later", ErrMemoryLimit, used, g.limit, others)
		}
		g.mu.Lock()
		freed := g.freed
		g.mu.Unlock()
		t := time.NewTimer(admitWaitStep)
		select {
		case <-freed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-stopC:
			t.Stop()
			return 0, raftnode.ErrStopped
		}
		t.Stop()
	}
}

// release gives back a reservation admit made (0: none).
func (g *memoryGuard) release(held int64) {
	if held != 0 {
		g.pending.Add(-held)
	}
}

func (g *memoryGuard) wake() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// evicted is called by the apply loop after an eviction entry: writers
// waiting for room look again.
func (g *memoryGuard) evicted() {
	g.mu.Lock()
	close(g.freed)
	g.freed = make(chan struct{})
	g.mu.Unlock()
}

// evictLoop is the eviction driver. It runs on every node but acts only
// while the node is the leader: it samples keys (engine.Evictor), proposes
// them as one eviction entry and waits for it to apply before choosing
// again, so the leader never chooses keys whose eviction is still in
// flight. A new leader's driver simply finds the store over its low-water
// mark and goes on. Work per cycle is bounded by evictMaxKeys (and the
// Evictor's sampling budget); cycles per wake-up by evictMaxCycles.
func (c *Core) evictLoop() {
	defer c.wg.Done()
	ev := engine.NewEvictorPolicy(c.cfg.MemberID, evictPolicies[c.cfg.EvictionPolicy])
	t := time.NewTicker(evictInterval)
	defer t.Stop()
	g := c.mem
	for {
		select {
		case <-c.stopC:
			return
		case <-t.C:
		case <-g.kick:
		}
		for range evictMaxCycles {
			if c.node.Status().State != raft.StateLeader {
				break
			}
			over := g.store.MemoryUsage() + g.pending.Load() - g.lowWater()
			if over <= 0 {
				break
			}
			if err := c.evictOnce(ev, over); err != nil {
				c.log.Debug("eviction cycle failed", "err", err)
				break
			}
		}
	}
}

// evictOnce chooses keys worth at least bytes and proposes their eviction.
func (c *Core) evictOnce(ev *engine.Evictor, bytes int64) error {
	keys := ev.Choose(c.store, bytes, evictMaxKeys)
	if len(keys) == 0 {
		return nil
	}
	data, err := command.EncodeEvict(keys)
	if err != nil {
		return err
	}
	// Propose returns early with ErrStopped when the node stops.
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.RequestTimeout)
	defer cancel()
	_, err = c.proposeAlone(ctx, data)
	return err
}

// txnGrowth is the most a transaction can add to MemoryUsage: the larger of
// its two branches' puts.
func txnGrowth(t *engine.Txn) int64 {
	branch := func(ops []engine.Op) (n int64) {
		for _, o := range ops {
			if o.Type == engine.OpPut {
				n += entryGrowth(o.Key, o.Value)
			}
		}
		return n
	}
	return max(branch(t.Success), branch(t.Failure))
}
