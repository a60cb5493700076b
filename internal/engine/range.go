package engine

import (
	"sort"

	"github.com/tidwall/btree"
)

// RangeOptions tune Range.
type RangeOptions struct {
	// Limit caps the number of returned KVs; 0 means unlimited.
	Limit int
	// KeysOnly omits values from the returned KVs.
	KeysOnly bool
	// CountOnly returns no KVs, only Count.
	CountOnly bool
	// Now, when set (unix ms), hides every key whose deadline is at or
	// before it: a read on the leader does not return a key whose expiry
	// is not applied yet. The state machine never sets it (applying must
	// not depend on a clock).
	Now int64
	// HideLeases hides the keys attached to these leases (the leader's
	// leases past their deadline, whose revoke has not applied yet).
	HideLeases map[int64]struct{}
}

// RangeResult is the outcome of Range. KVs alias engine memory (read-only).
type RangeResult struct {
	KVs []KeyValue
	// More reports that the range held more keys than Limit and KVs was
	// truncated (never set for CountOnly, matching etcd).
	More bool
	// Count is the number of keys in the whole range, regardless of Limit.
	Count int64
	// Revision is the store revision the result was read at.
	Revision int64
}

// isAllEnd reports whether end is the etcd "to the end of the keyspace"
// marker []byte{0}.
func isAllEnd(end []byte) bool { return len(end) == 1 && end[0] == 0 }

// PrefixEnd returns the smallest key greater than every key having prefix
// (etcd's GetPrefixRangeEnd). If no such key exists (prefix empty or all
// 0xff) it returns []byte{0}, meaning "every key >= start".
func PrefixEnd(prefix []byte) []byte {
	end := make([]byte, len(prefix))
	copy(end, prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0}
}

// Range reads keys with etcd semantics: end empty selects only start;
// end == []byte{0} selects every key >= start; otherwise [start, end) in byte
// order. The read is a consistent view at RangeResult.Revision.
//
// The read lock is held for the whole scan (a long Range delays the writer);
// callers scanning very large ranges should prefer a Snapshot.
func (s *Store) Range(start, end []byte, opts RangeOptions) RangeResult {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rangeLocked(start, end, opts)
}

// rangeLocked is Range for callers holding mu (read or write).
func (s *Store) rangeLocked(start, end []byte, opts RangeOptions) RangeResult {
	res := RangeResult{Revision: s.rev.Load()}

	if len(end) == 0 {
		e, ok := s.m.getBytes(start)
		if !ok || opts.hides(e) {
			return res
		}
		res.Count = 1
		if !opts.CountOnly {
			res.KVs = []KeyValue{e.kv(opts.KeysOnly)}
		}
		return res
	}

	if len(opts.HideLeases) > 0 || s.anyDueLocked(opts.Now) {
		return s.rangeLive(start, end, opts, res)
	}

	if opts.CountOnly {
		res.Count = s.countRange(start, end)
		return res
	}

	limit := max(opts.Limit, 0)
	s.ascendRange(start, end, func(e *entry) bool {
		if limit > 0 && len(res.KVs) == limit {
			// The range holds more than limit keys. Count the whole range by
			// rank instead of scanning (and touching) the rest of it.
			res.More = true
			return false
		}
		if res.KVs == nil {
			res.KVs = make([]KeyValue, 0, initialCap(limit))
		}
		res.KVs = append(res.KVs, e.kv(opts.KeysOnly))
		return true
	})
	if res.More {
		res.Count = s.countRange(start, end)
	} else {
		res.Count = int64(len(res.KVs))
	}
	return res
}

// rangeLive is rangeLocked when some keys are past their deadline: it
// scans the whole range, skipping them, so Count is exact.
func (s *Store) rangeLive(start, end []byte, opts RangeOptions, res RangeResult) RangeResult {
	limit := max(opts.Limit, 0)
	s.ascendRange(start, end, func(e *entry) bool {
		if opts.hides(e) {
			return true
		}
		res.Count++
		if opts.CountOnly {
			return true
		}
		if limit > 0 && len(res.KVs) == limit {
			res.More = true
			return true
		}
		res.KVs = append(res.KVs, e.kv(opts.KeysOnly))
		return true
	})
	return res
}

// hides reports whether the read opts describe must skip e.
func (opts *RangeOptions) hides(e *entry) bool {
	if e.flags() == 0 {
		return false
	}
	if e.expiredAt(opts.Now) {
		return true
	}
	if len(opts.HideLeases) > 0 {
		if _, l := e.meta(); l != 0 {
			_, hide := opts.HideLeases[l]
			return hide
		}
	}
	return false
}

// expiredAt reports whether e's deadline is at or before now; never for
// now 0 (no clock given: every stored key counts).
func (e *entry) expiredAt(now int64) bool {
	if now == 0 || e.tlen&flagDeadline == 0 {
		return false
	}
	return e.deadline() <= now
}

// countRange returns the number of keys in [start, end) (end non-empty, as in
// Range) in O(log² n) using the B-tree's per-node counts, independent of the
// range size. Callers must hold mu.
func (s *Store) countRange(start, end []byte) int64 {
	lo := rank(s.tree, start)
	if isAllEnd(end) {
		return int64(s.tree.Len() - lo)
	}
	if string(end) <= string(start) {
		return 0
	}
	return int64(rank(s.tree, end) - lo)
}

// rank returns the number of keys strictly less than key.
func rank(tr *btree.BTreeG[*entry], key []byte) int {
	return sort.Search(tr.Len(), func(i int) bool {
		e, _ := tr.GetAt(i)
		return e.key() >= string(key)
	})
}

func initialCap(limit int) int {
	if limit > 0 && limit <= 1024 {
		return limit
	}
	return 16
}

// ascendRange visits entries in [start, end) (end as in Range, non-empty) in
// key order, seeking to start rather than scanning from the first key.
// Callers must hold mu.
func (s *Store) ascendRange(start, end []byte, fn func(*entry) bool) {
	ascendTree(s.tree, start, end, fn)
}

func ascendTree(tr *btree.BTreeG[*entry], start, end []byte, fn func(*entry) bool) {
	all := isAllEnd(end)
	if !all && string(end) <= string(start) {
		return
	}
	pivot := keyEntry(start)
	tr.Ascend(pivot, func(e *entry) bool {
		// string(end) in a comparison does not allocate.
		if !all && e.key() >= string(end) {
			return false
		}
		return fn(e)
	})
}
