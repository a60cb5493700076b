package engine

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"
)

// EvictPolicy is how an Evictor chooses keys, as Redis's maxmemory-policy:
// among every key or only the volatile ones (keys with a deadline), the
// least recently used, the nearest deadline, or at random.
type EvictPolicy uint8

// The eviction policies.
const (
	EvictAllKeysLRU EvictPolicy = iota
	EvictVolatileLRU
	EvictVolatileTTL
	EvictAllKeysRandom
	EvictVolatileRandom
)

func (p EvictPolicy) volatile() bool {
	return p == EvictVolatileLRU || p == EvictVolatileTTL || p == EvictVolatileRandom
}

func (p EvictPolicy) random() bool { return p == EvictAllKeysRandom || p == EvictVolatileRandom }

// EvictKey names a key chosen for eviction together with the mod revision it
// had when it was chosen.
type EvictKey struct {
	Key         []byte
	ModRevision int64
}

// ApplyEvict removes, as the raft entry at index, every listed key whose mod
// revision still equals EvictKey.ModRevision. A key that is gone, or was
// rewritten after the leader chose it (its mod revision moved), is skipped:
// the write that came after the choice made it recent, so evicting it would
// be wrong, and the decision depends only on replicated state, so every
// replica skips the same keys. The removals share one new revision (if any
// key was removed), like an Apply. It returns the number of keys removed.
//
// Like Apply, an index <= AppliedIndex() is ignored (ok=false), and it must
// be called from the single writer goroutine.
func (s *Store) ApplyEvict(index uint64, keys []EvictKey) (evicted int, ok bool) {
	return s.removeChosen(index, keys, false, &s.evicted)
}

// removeChosen removes, as the raft entry at index, every key of keys the
// leader chose that still has the mod revision it was chosen at (and, with
// needDeadline, still has a deadline), at one new revision when any went,
// and adds their number to count. An index <= AppliedIndex() is ignored
// (ok=false).
func (s *Store) removeChosen(index uint64, keys []EvictKey, needDeadline bool, count *atomic.Uint64) (removed int, ok bool) {
	if index <= s.applied.Load() {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		e, exists := s.m.getBytes(k.Key)
		if !exists || e.mod() != k.ModRevision || (needDeadline && e.tlen&flagDeadline == 0) {
			continue
		}
		s.remove(e)
		removed++
	}
	if removed > 0 {
		s.setRevision(s.rev.Load() + 1)
		count.Add(uint64(removed))
	}
	s.applied.Store(index)
	return removed, true
}

// EvictedKeys returns how many keys ApplyEvict removed on this store since
// New. Every replica applies the same eviction entries, so the count agrees
// across replicas that started together; it is not part of snapshots.
func (s *Store) EvictedKeys() uint64 { return s.evicted.Load() }

// Eviction sampling parameters, as in Redis: each draw samples a few random
// keys into a small pool that keeps the idlest candidates seen so far.
const (
	evictSamples  = 5
	evictPoolSize = 16
	// evictMaxDraws bounds the sampling rounds of one Choose call per key
	// asked for, so a store whose candidates keep going stale (hot keys
	// being touched) cannot make a call run long.
	evictMaxDraws = 4
)

// candidate is a pooled eviction candidate: the key's identity (key and
// mod revision) and the access stamp it had when sampled.
type candidate struct {
	key      string
	mod      int64
	access   uint32
	deadline int64
}

// Evictor chooses keys to evict by approximate LRU: it samples random keys
// and keeps a pool of the least recently accessed ones across calls, then
// hands out the idlest still-valid candidate. Recency is the store's
// revision clock: an entry's access stamp is the revision at its last write
// or Get, so idleness counts writes since the last access (modulo 2^32).
//
// An Evictor is not safe for concurrent use; the leader's eviction driver
// owns one. It reads the store under its read lock in short sections (one
// draw at a time), so it never holds up the writer for long.
type Evictor struct {
	pool   []candidate // ascending rank; the best candidate is last
	rng    *rand.Rand
	policy EvictPolicy
}

// NewEvictor returns an Evictor with an empty pool. seed only varies the
// sampling; any value is fine.
func NewEvictor(seed uint64) *Evictor {
	return &Evictor{rng: rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15))}
}

// NewEvictorPolicy returns an Evictor choosing by policy. The volatile
// policies sample only keys with a deadline (from the deadline index), so
// they never choose a key without one.
func NewEvictorPolicy(seed uint64, policy EvictPolicy) *Evictor {
	ev := NewEvictor(seed)
	ev.policy = policy
	return ev
}

// Choose returns keys (with their current mod revisions) whose sizes sum to
// at least bytes, stopping early at maxKeys keys or when its sampling budget
// (evictMaxDraws draws per key wanted) runs out. The keys are distinct.
// Nothing is removed: the caller proposes them (ApplyEvict).
func (ev *Evictor) Choose(s *Store, bytes int64, maxKeys int) []EvictKey {
	var out []EvictKey
	chosen := make(map[string]struct{})
	var freed int64
	for draws := 0; freed < bytes && len(out) < maxKeys && draws < evictMaxDraws*maxKeys; draws++ {
		c, size, ok := ev.draw(s, chosen)
		if !ok {
			continue
		}
		chosen[c.key] = struct{}{}
		out = append(out, EvictKey{Key: []byte(c.key), ModRevision: c.mod})
		freed += size
	}
	return out
}

// draw samples evictSamples keys into the pool and pops the idlest
// candidate that is still current (same mod revision, not read since it was
// sampled). It returns ok=false when the store is empty or every pooled
// candidate went stale.
func (ev *Evictor) draw(s *Store, chosen map[string]struct{}) (candidate, int64, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := s.tree.Len()
	if ev.policy.volatile() {
		n = s.dl.Len()
	}
	if n == 0 {
		return candidate{}, 0, false
	}
	sample := func() (*entry, bool) {
		if ev.policy.volatile() {
			it, ok := s.dl.GetAt(ev.rng.IntN(n))
			return it.e, ok
		}
		return s.tree.GetAt(ev.rng.IntN(n))
	}
	now := uint32(s.rev.Load())
	for range evictSamples {
		e, ok := sample()
		if !ok {
			continue
		}
		if _, dup := chosen[e.key()]; dup {
			continue
		}
		c := candidate{key: e.key(), mod: e.mod(), access: e.access.Load(), deadline: e.deadline()}
		if ev.policy.random() {
			return c, e.size(), true
		}
		ev.insert(c, now)
	}
	for len(ev.pool) > 0 {
		c := ev.pool[len(ev.pool)-1]
		ev.pool = ev.pool[:len(ev.pool)-1]
		e, ok := s.m.get(c.key)
		if !ok || e.mod() != c.mod || (ev.policy != EvictVolatileTTL && e.access.Load() != c.access) {
			continue // gone, rewritten or read since sampled
		}
		if _, dup := chosen[c.key]; dup {
			continue
		}
		return c, e.size(), true
	}
	return candidate{}, 0, false
}

// rank is how good a candidate c is (higher: evict sooner): its idleness
// for the LRU policies, the nearness of its deadline for volatile-ttl.
func (ev *Evictor) rank(c candidate, now uint32) uint64 {
	if ev.policy == EvictVolatileTTL {
		return uint64(math.MaxInt64 - c.deadline)
	}
	return uint64(now - c.access)
}

// insert adds c to the pool, keeping it sorted by idleness (now - access)
// and bounded: when full, c replaces the least idle candidate only if it is
// idler. A key already pooled is refreshed rather than duplicated. The order
// does not depend on now (every idleness shifts by the same amount as the
// clock moves), so the pool stays sorted across calls.
func (ev *Evictor) insert(c candidate, now uint32) {
	if i := slices.IndexFunc(ev.pool, func(p candidate) bool { return p.key == c.key }); i >= 0 {
		ev.pool = slices.Delete(ev.pool, i, i+1)
	}
	idle := ev.rank(c, now)
	if len(ev.pool) == evictPoolSize {
		if idle <= ev.rank(ev.pool[0], now) {
			return
		}
		ev.pool = slices.Delete(ev.pool, 0, 1)
	}
	i, _ := slices.BinarySearchFunc(ev.pool, idle, func(p candidate, idle uint64) int {
		switch pi := ev.rank(p, now); {
		case pi < idle:
			return -1
		case pi > idle:
			return 1
		}
		return 0
	})
	ev.pool = slices.Insert(ev.pool, i, c)
}
