package engine

import (
	"bytes"
	"errors"
	"fmt"
)

// OpType is the kind of a write operation.
type OpType uint8

const (
	// OpPut creates or replaces Key with Value.
	OpPut OpType = iota + 1
	// OpDelete removes the single key Key.
	OpDelete
	// OpDeleteRange removes every key in [Key, End), End interpreted as in
	// Range (End == []byte{0} means every key >= Key).
	OpDeleteRange
	// OpRange reads Key (End empty) or [Key, End) like Range, seeing the
	// writes of the ops before it in the same call. It changes nothing.
	OpRange
)

func (t OpType) String() string {
	switch t {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpDeleteRange:
		return "delete-range"
	case OpRange:
		return "range"
	}
	return fmt.Sprintf("OpType(%d)", uint8(t))
}

// Op is one write operation. Apply copies Key, Value and End, so the caller
// may reuse its buffers once Apply returns.
type Op struct {
	Type       OpType
	Key, Value []byte
	End        []byte
	PrevKV     bool
	// Deadline (unix ms) makes an OpPut's key expire; Lease attaches it to
	// a lease, which must exist. Zero means none: a put without them
	// clears the key's previous deadline and lease.
	Deadline, Lease int64
	// Now is the preparing node's clock (unix ms) for a put or delete: a
	// key whose deadline is at or before it is absent, as reads see it. A
	// put starts such a key anew (create revision, version 1, no Prev); a
	// delete removes it without counting or returning it. 0: every stored
	// key counts.
	Now int64
	// Range tunes an OpRange.
	Range RangeOptions
}

// OpResult is the outcome of one Op. Prev aliases engine memory (read-only).
type OpResult struct {
	// Prev holds the previous key-values (for OpPut the value being
	// overwritten, for deletes the removed ones); only set when Op.PrevKV
	// is true and something existed.
	Prev []KeyValue
	// Deleted is the number of keys removed by OpDelete/OpDeleteRange.
	Deleted int64
	// KVs, More and Count are the answer of an OpRange (as in RangeResult).
	KVs   []KeyValue
	More  bool
	Count int64
	// NoLease is set when an OpPut named a lease that does not exist: the
	// put was not applied.
	NoLease bool
}

// Result is the outcome of one Apply: the store revision after it and one
// OpResult per Op, in order.
type Result struct {
	Revision int64
	Ops      []OpResult
}

// Errors returned by ValidateOp.
var (
	ErrEmptyKey      = errors.New("engine: empty key")
	ErrKeyTooLarge   = errors.New("engine: key too large")
	ErrValueTooLarge = errors.New("engine: value too large")
	ErrInvalidRange  = errors.New("engine: invalid range: end <= key")
	ErrUnknownOp     = errors.New("engine: unknown op type")
)

// ValidateOp reports whether op is well formed. It is a pure function; the
// service layer calls it before proposing, and Apply calls it again so a bad
// log entry can never diverge replicas. Size limits match the snapshot format
// so any accepted state can be snapshotted.
func ValidateOp(op Op) error {
	if len(op.Key) == 0 {
		return ErrEmptyKey
	}
	if len(op.Key) > MaxKeySize {
		return ErrKeyTooLarge
	}
	switch op.Type {
	case OpPut:
		if len(op.Value) > MaxValueSize {
			return ErrValueTooLarge
		}
	case OpDelete:
	case OpDeleteRange, OpRange:
		if op.Type == OpRange && len(op.End) == 0 {
			return nil
		}
		if len(op.End) > MaxKeySize {
			return ErrKeyTooLarge
		}
		if !isAllEnd(op.End) && bytes.Compare(op.End, op.Key) <= 0 {
			return ErrInvalidRange
		}
	default:
		return ErrUnknownOp
	}
	return nil
}

// Apply applies ops atomically at one new revision (Revision()+1) if at least
// one op changes something; otherwise the revision does not move. index is
// the raft index of the entry carrying ops: entries with index <=
// AppliedIndex() are ignored (ok=false, Result{Revision: Revision()}) so
// replays are idempotent. Ops failing ValidateOp are skipped (zero OpResult)
// rather than panicking: every replica skips them identically.
//
// Apply must be called from the single writer goroutine. Readers never
// observe a partially applied call: all ops run under the write lock.
func (s *Store) Apply(index uint64, ops []Op) (Result, bool) {
	if index <= s.applied.Load() {
		return Result{Revision: s.rev.Load()}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	res := Result{Ops: make([]OpResult, len(ops))}
	s.applyLocked(ops, res.Ops)
	s.applied.Store(index)
	res.Revision = s.rev.Load()
	return res, true
}

// applyLocked runs ops at revision Revision()+1, filling out (one OpResult
// per op), and moves the revision if something changed. Callers hold mu.
func (s *Store) applyLocked(ops []Op, out []OpResult) {
	rev := s.rev.Load() + 1
	changed := false
	for i := range ops {
		op := &ops[i]
		if ValidateOp(*op) != nil {
			continue
		}
		var c bool
		switch op.Type {
		case OpPut:
			c = s.put(op, rev, &out[i])
		case OpDelete:
			c = s.deleteKey(op, &out[i])
		case OpDeleteRange:
			c = s.deleteRange(op, &out[i])
		case OpRange:
			r := s.rangeLocked(op.Key, op.End, op.Range)
			out[i].KVs, out[i].More, out[i].Count = r.KVs, r.More, r.Count
		}
		changed = changed || c
	}
	if changed {
		s.setRevision(rev)
	}
}

// MarkApplied advances AppliedIndex for raft entries that carry no engine op
// (empty entries, conf changes). Lower or equal indexes are ignored.
func (s *Store) MarkApplied(index uint64) {
	if index <= s.applied.Load() {
		return
	}
	s.mu.Lock()
	s.applied.Store(index)
	s.mu.Unlock()
}

func (s *Store) put(op *Op, rev int64, r *OpResult) bool {
	if op.Lease != 0 {
		if _, ok := s.leases[op.Lease]; !ok {
			r.NoLease = true
			return false
		}
	}
	slot, h := s.m.lookup(op.Key)
	exists := slot >= 0
	var old *entry
	create, version := rev, int64(1)
	// prev is the key-value the put replaces as readers saw it: none for
	// a key past its deadline.
	var prev *entry
	if exists {
		old = *s.m.slot(slot)
		s.mem -= old.size()
		s.unindexMeta(old)
		if !old.expiredAt(op.Now) {
			prev = old
			create = old.create()
			version = old.version() + 1
			if op.PrevKV {
				r.Prev = []KeyValue{old.kv(false)}
			}
		}
	}
	e := newEntryMeta(op.Key, op.Value, create, rev, version, op.Deadline, op.Lease)
	e.access.Store(uint32(rev))
	s.m.setAt(slot, h, e)
	s.tree.Set(e)
	s.mem += e.size()
	s.indexMeta(e)
	if exists && prev == nil {
		// The key past its deadline goes, as its expiry would have removed
		// it: watchers see its delete before the new key.
		s.record(EventDelete, rev, nil, old)
	}
	s.record(EventPut, rev, e, prev)
	return true
}

func (s *Store) deleteKey(op *Op, r *OpResult) bool {
	old, exists := s.m.getBytes(op.Key)
	if !exists {
		return false
	}
	s.remove(old)
	if old.expiredAt(op.Now) {
		return true // gone already to readers: its delete is the expiry's
	}
	r.Deleted = 1
	if op.PrevKV {
		r.Prev = []KeyValue{old.kv(false)}
	}
	return true
}

func (s *Store) deleteRange(op *Op, r *OpResult) bool {
	// Collect first: the tree must not be mutated while it is being iterated.
	var victims []*entry
	s.ascendRange(op.Key, op.End, func(e *entry) bool {
		victims = append(victims, e)
		return true
	})
	if len(victims) == 0 {
		return false
	}
	for _, e := range victims {
		s.remove(e)
		if e.expiredAt(op.Now) {
			continue // gone already to readers
		}
		r.Deleted++
		if op.PrevKV {
			r.Prev = append(r.Prev, e.kv(false))
		}
	}
	return true
}

// remove takes e out of the store as part of the revision being applied
// (Revision()+1), reporting it to the observer: every removal (delete,
// range delete, eviction) goes through it.
func (s *Store) remove(e *entry) {
	s.m.del(e.key())
	s.tree.Delete(e)
	s.mem -= e.size()
	s.unindexMeta(e)
	s.record(EventDelete, s.rev.Load()+1, nil, e)
}
