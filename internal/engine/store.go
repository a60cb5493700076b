package engine

import (
	"encoding/binary"
	"hash/fnv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tidwall/btree"
)

func entryLess(a, b *entry) bool { return a.key() < b.key() }

func newTree() *btree.BTreeG[*entry] {
	// NoLocks: the Store's RWMutex already serialises writers against readers,
	// and a snapshot's tree copy is never written.
	return btree.NewBTreeGOptions(entryLess, btree.Options{NoLocks: true})
}

// KeyValue is one key with its revisions. It is a plain value and safe to
// copy and share between goroutines.
//
// Key and Value refer to engine-owned immutable memory; callers must not
// modify them (doing so corrupts the store and every snapshot). Copy them if
// they need to be mutated.
type KeyValue struct {
	Key, Value                           []byte
	CreateRevision, ModRevision, Version int64
	// Deadline is when the key expires, in unix milliseconds (0: never);
	// Lease the lease it is attached to (0: none).
	Deadline, Lease int64
}

// Expired reports whether kv's deadline is at or before now (unix ms).
func (kv KeyValue) Expired(now int64) bool { return kv.Deadline != 0 && kv.Deadline <= now }

// Store is the replicated in-memory key-value state machine.
//
// Get, Range, Revision, AppliedIndex, Len, MemoryUsage, Hash and Snapshot are
// safe for concurrent use. Apply, MarkApplied and Restore must be called by a
// single writer goroutine. Returned KeyValues alias engine memory (read-only).
type Store struct {
	mu   sync.RWMutex
	m    index                 // point reads; guarded by mu
	tree *btree.BTreeG[*entry] // ordered scans; guarded by mu
	mem  int64                 // guarded by mu
	// dl orders the keys that have a deadline by (deadline, key); leases
	// is the lease table. Both are guarded by mu.
	dl     *btree.BTreeG[dlItem]
	leases map[int64]*lease
	// earliest is dl's smallest deadline (0: dl is empty), written under
	// mu and read lock-free by EarliestDeadline.
	earliest atomic.Int64

	// rev and applied are written only under mu but read lock-free, so the
	// cheap accessors never contend with readers holding mu.
	rev     atomic.Int64
	applied atomic.Uint64
	// evicted counts keys removed by ApplyEvict since New (not restored
	// from snapshots: it describes this process, not the replicated state).
	evicted atomic.Uint64
	// expired counts keys removed by ApplyExpire and by the revocation of
	// an expired lease, likewise.
	expired atomic.Uint64

	// obs is told of every change (observe.go); pending holds the current
	// revision's changes until setRevision hands them over. Guarded by mu.
	obs     Observer
	pending []Event
}

// New returns an empty store at revision 0 and applied index 0.
func New() *Store {
	return &Store{m: newIndex(0), tree: newTree(), dl: newDeadlineTree(), leases: map[int64]*lease{}}
}

// Get returns the current value of key. The result aliases engine memory.
func (s *Store) Get(key []byte) (KeyValue, bool) {
	s.mu.RLock()
	e, ok := s.m.getBytes(key)
	s.mu.RUnlock()
	if !ok {
		return KeyValue{}, false
	}
	s.touch(e)
	// e is immutable, so building the result outside the lock is safe.
	return e.kv(false), true
}

// touch records a read of e for LRU eviction without any lock: one atomic
// load, and a store only when the clock moved, so concurrent reads of a hot
// key do not keep writing its cache line.
func (s *Store) touch(e *entry) {
	now := uint32(s.rev.Load())
	if e.access.Load() != now {
		e.access.Store(now)
	}
}

// Revision returns the store revision: the revision of the last Apply that
// changed something (0 for an empty, never-written store).
func (s *Store) Revision() int64 { return s.rev.Load() }

// AppliedIndex returns the raft index of the last applied entry.
func (s *Store) AppliedIndex() uint64 { return s.applied.Load() }

// Len returns the number of keys.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m.len()
}

// MemoryUsage returns the logical size of the data: the sum over entries of
// entrySize (key, value and revisions in their allocation, rounded up to 16
// bytes, plus IndexOverhead; about len(key)+len(value)+EntryOverhead).
func (s *Store) MemoryUsage() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mem
}

// Hash returns a deterministic FNV-64a hash of the revision and of every key,
// value and per-key revision, in key order. The applied index is excluded on
// purpose: replicas can reach the same state through different raft indexes
// (e.g. via Restore). It holds the read lock for a full scan; meant for tests
// and consistency checks, not hot paths.
func (s *Store) Hash() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return hashTree(s.tree, s.rev.Load(), s.leaseList())
}

func hashTree(tr *btree.BTreeG[*entry], rev int64, leases []LeaseInfo) uint64 {
	h := fnv.New64a()
	var buf [8 * 3]byte
	binary.BigEndian.PutUint64(buf[:8], uint64(rev))
	h.Write(buf[:8])
	tr.Scan(func(e *entry) bool {
		// Length prefixes keep ("ab","c") and ("a","bc") distinct.
		binary.BigEndian.PutUint64(buf[:8], uint64(len(e.key())))
		h.Write(buf[:8])
		h.Write(e.keyBytes())
		binary.BigEndian.PutUint64(buf[:8], uint64(e.vlen))
		h.Write(buf[:8])
		h.Write(e.value())
		binary.BigEndian.PutUint64(buf[0:8], uint64(e.create()))
		binary.BigEndian.PutUint64(buf[8:16], uint64(e.mod()))
		binary.BigEndian.PutUint64(buf[16:24], uint64(e.version()))
		h.Write(buf[:])
		if e.flags() != 0 {
			d, l := e.meta()
			binary.BigEndian.PutUint64(buf[0:8], uint64(d))
			binary.BigEndian.PutUint64(buf[8:16], uint64(l))
			h.Write(buf[:16])
		}
		return true
	})
	for _, l := range leases {
		binary.BigEndian.PutUint64(buf[0:8], uint64(l.ID))
		binary.BigEndian.PutUint64(buf[8:16], uint64(l.TTL))
		h.Write(buf[:16])
	}
	return h.Sum64()
}

// CheckConsistency verifies the store's internal invariants (map and tree
// agree, keys strictly ordered, revisions sane, memory accounting exact).
// It returns a description of the first violation, or "". It takes the read
// lock and visits every key: tests, the fuzzer and builds with the
// invariants tag call it.
func (s *Store) CheckConsistency() string { return s.checkConsistency() }

func (s *Store) checkConsistency() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.tree.Len() != s.m.len() {
		return "tree and map sizes differ"
	}
	if len(s.pending) > 0 {
		// Every apply path that changes keys publishes its revision
		// through setRevision, which hands the changes to the observer.
		return "changes recorded for the observer were never published (an apply path moved the revision without setRevision)"
	}
	var mem int64
	withMeta := 0
	prev := ""
	first := true
	bad := ""
	s.tree.Scan(func(e *entry) bool {
		if !first && strings.Compare(prev, e.key()) >= 0 {
			bad = "keys not strictly increasing"
			return false
		}
		first = false
		prev = e.key()
		if got, _ := s.m.get(e.key()); got != e {
			bad = "map and tree disagree on " + e.key()
			return false
		}
		if e.key() == "" || e.create() < 1 || e.mod() < e.create() || e.version() < 1 || e.mod() > s.rev.Load() {
			bad = "invalid entry " + e.key()
			return false
		}
		mem += e.size()
		if d, l := e.meta(); d != 0 || l != 0 {
			withMeta++
			if d != 0 {
				if _, ok := s.dl.Get(dlItem{d, e}); !ok {
					bad = "deadline index misses " + e.key()
					return false
				}
			}
			if l != 0 {
				if ls, ok := s.leases[l]; !ok {
					bad = "key attached to a missing lease " + e.key()
					return false
				} else if _, ok := ls.keys[e.key()]; !ok {
					bad = "lease misses its key " + e.key()
					return false
				}
			}
		}
		return true
	})
	if bad != "" {
		return bad
	}
	attached := 0
	for _, l := range s.leases {
		attached += len(l.keys)
	}
	mem += int64(len(s.leases)) * LeaseOverhead
	if withMeta < s.dl.Len() || withMeta < attached {
		return "deadline index or leases hold keys the store does not"
	}
	if mem != s.mem {
		return "memory usage mismatch"
	}
	return ""
}
