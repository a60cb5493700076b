package engine

import (
	"errors"
	"slices"

	"github.com/tidwall/btree"
)

// Expiring keys. A key may carry a deadline (unix milliseconds, fixed by
// the node that prepared the put and carried in the log entry, so every
// replica stores the same number) and may be attached to a lease. Nothing
// here reads a clock: the leader decides that a deadline or a lease has
// passed and proposes ApplyExpire or ApplyLeaseRevoke, which every replica
// applies identically. The deadline index and the lease table are derived
// from the entries and the replicated lease grants, and change only in
// apply, under the write lock.

// Errors of the lease operations.
var (
	ErrLeaseNotFound = errors.New("requested lease not found")
	ErrLeaseExists   = errors.New("lease already exists")
)

// LeaseInfo is one lease: its id and granted TTL in seconds.
type LeaseInfo struct {
	ID, TTL int64
}

// lease is one granted lease and the keys attached to it.
type lease struct {
	ttl int64
	// keys attached to the lease; nil until the first one is.
	keys map[string]struct{}
}

// LeaseOverhead is what one lease adds to MemoryUsage: its entry in the
// lease table and its record, and the leader's deadline for it. Leases
// count against the memory limit as keys do, so granting a million of them
// is admitted like the writes it costs.
const LeaseOverhead = 160

// dlItem is one key of the deadline index.
type dlItem struct {
	deadline int64
	e        *entry
}

func dlLess(a, b dlItem) bool {
	if a.deadline != b.deadline {
		return a.deadline < b.deadline
	}
	return a.e.key() < b.e.key()
}

func newDeadlineTree() *btree.BTreeG[dlItem] {
	return btree.NewBTreeGOptions(dlLess, btree.Options{NoLocks: true})
}

// indexMeta adds e to the deadline index and its lease. Callers hold mu.
func (s *Store) indexMeta(e *entry) {
	if e.flags() == 0 {
		return
	}
	d, l := e.meta()
	if d != 0 {
		s.dl.Set(dlItem{d, e})
		if cur := s.earliest.Load(); cur == 0 || d < cur {
			s.earliest.Store(d)
		}
	}
	if l != 0 {
		if ls, ok := s.leases[l]; ok {
			if ls.keys == nil {
				ls.keys = map[string]struct{}{}
			}
			ls.keys[e.key()] = struct{}{}
		}
	}
}

// unindexMeta removes e from the deadline index and its lease. Callers
// hold mu.
func (s *Store) unindexMeta(e *entry) {
	if e.flags() == 0 {
		return
	}
	d, l := e.meta()
	if d != 0 {
		s.dl.Delete(dlItem{d, e})
		if d == s.earliest.Load() {
			it, _ := s.dl.Min()
			s.earliest.Store(it.deadline)
		}
	}
	if l != 0 {
		if ls, ok := s.leases[l]; ok {
			delete(ls.keys, e.key())
		}
	}
}

// ApplyExpire removes, as the raft entry at index, every listed key whose
// mod revision still equals ModRevision and that still has a deadline: the
// leader's expiry decision. A key rewritten after the leader chose it is
// skipped on every replica alike. The removals share one new revision (if
// any key was removed). It returns the number of keys removed.
//
// Like Apply, an index <= AppliedIndex() is ignored (ok=false), and it must
// be called from the single writer goroutine.
func (s *Store) ApplyExpire(index uint64, keys []EvictKey) (expired int, ok bool) {
	return s.removeChosen(index, keys, true, &s.expired)
}

// ExpiredKeys returns how many keys expired (ApplyExpire, and revocations
// of expired leases) on this store since New; like EvictedKeys it is not
// part of snapshots.
func (s *Store) ExpiredKeys() uint64 { return s.expired.Load() }

// DueKeys returns up to max keys (with their mod revisions) whose deadline
// is at or before now (unix ms), earliest first: what the leader proposes
// to expire. It reads under the read lock.
func (s *Store) DueKeys(now int64, max int) []EvictKey {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []EvictKey
	s.dl.Scan(func(it dlItem) bool {
		if it.deadline > now || len(out) == max {
			return false
		}
		// The key aliases the entry, which is immutable.
		out = append(out, EvictKey{Key: it.e.keyBytes(), ModRevision: it.e.mod()})
		return true
	})
	return out
}

// NextDeadline returns the earliest key deadline, if any key has one.
func (s *Store) NextDeadline() (int64, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	it, ok := s.dl.Min()
	return it.deadline, ok
}

// EarliestDeadline returns the earliest deadline of any key (unix ms), 0
// when no key has one: once it has passed, some key readers no longer see
// has not been deleted yet. It takes no lock.
func (s *Store) EarliestDeadline() int64 { return s.earliest.Load() }

// KeysWithDeadline returns how many keys have a deadline.
func (s *Store) KeysWithDeadline() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.dl.Len()
}

// anyDueLocked reports whether some key's deadline is at or before now.
// Callers hold mu.
func (s *Store) anyDueLocked(now int64) bool {
	if now == 0 {
		return false
	}
	it, ok := s.dl.Min()
	return ok && it.deadline <= now
}

// ApplyLeaseGrant creates lease id with ttl seconds as the raft entry at
// index. The revision does not move (a lease is not a key). An existing id
// fails with ErrLeaseExists and changes nothing.
func (s *Store) ApplyLeaseGrant(index uint64, id, ttl int64) error {
	if index <= s.applied.Load() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied.Store(index)
	if id == 0 {
		return ErrLeaseNotFound
	}
	if _, ok := s.leases[id]; ok {
		return ErrLeaseExists
	}
	s.leases[id] = &lease{ttl: ttl}
	s.mem += LeaseOverhead
	return nil
}

// ApplyLeaseRevoke removes lease id and every key attached to it, as the
// raft entry at index, at one new revision when it had keys. expired says
// the leader revoked it because its time ran out: its keys count in
// ExpiredKeys. A missing lease fails with ErrLeaseNotFound. It returns the
// number of keys removed.
func (s *Store) ApplyLeaseRevoke(index uint64, id int64, expired bool) (int, error) {
	if index <= s.applied.Load() {
		return 0, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied.Store(index)
	ls, ok := s.leases[id]
	if !ok {
		return 0, ErrLeaseNotFound
	}
	// Sorted, so the removals happen in the same order on every replica.
	keys := make([]string, 0, len(ls.keys))
	for k := range ls.keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	n := 0
	for _, k := range keys {
		if e, ok := s.m.get(k); ok {
			s.remove(e)
			n++
		}
	}
	delete(s.leases, id)
	s.mem -= LeaseOverhead
	if n > 0 {
		s.setRevision(s.rev.Load() + 1)
		if expired {
			s.expired.Add(uint64(n))
		}
	}
	return n, nil
}

// Lease returns lease id's granted TTL and, with keys, its attached keys
// in order.
func (s *Store) Lease(id int64, keys bool) (ttl int64, attached [][]byte, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ls, ok := s.leases[id]
	if !ok {
		return 0, nil, false
	}
	if keys {
		for k := range ls.keys {
			attached = append(attached, []byte(k))
		}
		slices.SortFunc(attached, func(a, b []byte) int { return compareBytes(a, b) })
	}
	return ls.ttl, attached, true
}

func compareBytes(a, b []byte) int {
	switch {
	case string(a) < string(b):
		return -1
	case string(a) > string(b):
		return 1
	}
	return 0
}

// LeaseCount returns the number of leases.
func (s *Store) LeaseCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.leases)
}

// Leases returns every lease, ordered by id.
func (s *Store) Leases() []LeaseInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.leaseList()
}

// LeasePage returns, ordered, the ids of at most limit leases whose id is
// greater than after, the smallest ones, and whether there are more. It
// holds the read lock for one pass over the leases and allocates only the
// page: a listing costs what it returns, whatever the number of leases.
func (s *Store) LeasePage(after int64, limit int) (ids []int64, more bool) {
	ids = s.leasesAfter(after, max(limit, 0)+1)
	if len(ids) > limit {
		return ids[:limit], true
	}
	return ids, false
}

// leasesAfter returns the n smallest lease ids greater than after, in
// order: a max-heap of the n smallest seen so far.
func (s *Store) leasesAfter(after int64, n int) []int64 {
	s.mu.RLock()
	h := make([]int64, 0, min(n, len(s.leases)))
	for id := range s.leases {
		if id <= after {
			continue
		}
		if len(h) < n {
			h = append(h, id)
			for i := len(h) - 1; i > 0; { // sift up
				p := (i - 1) / 2
				if h[p] >= h[i] {
					break
				}
				h[p], h[i] = h[i], h[p]
				i = p
			}
			continue
		}
		if id >= h[0] {
			continue
		}
		h[0] = id
		for i := 0; ; { // sift down
			l, big := 2*i+1, i
			if l < len(h) && h[l] > h[big] {
				big = l
			}
			if l+1 < len(h) && h[l+1] > h[big] {
				big = l + 1
			}
			if big == i {
				break
			}
			h[i], h[big] = h[big], h[i]
			i = big
		}
	}
	s.mu.RUnlock()
	slices.Sort(h)
	return h
}

// leaseList is Leases for callers holding mu.
func (s *Store) leaseList() []LeaseInfo {
	out := make([]LeaseInfo, 0, len(s.leases))
	for id, l := range s.leases {
		out = append(out, LeaseInfo{ID: id, TTL: l.ttl})
	}
	slices.SortFunc(out, func(a, b LeaseInfo) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}
