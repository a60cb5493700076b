package engine

import (
	"bytes"
	"errors"
	"fmt"
)

// CompareTarget is the field of a key a Compare reads.
type CompareTarget uint8

const (
	// CompareValue compares the value bytewise.
	CompareValue CompareTarget = iota + 1
	// CompareVersion compares the version.
	CompareVersion
	// CompareCreate compares the create revision.
	CompareCreate
	// CompareMod compares the mod revision.
	CompareMod
)

// CompareOp relates a key's field to a Compare's operand.
type CompareOp uint8

const (
	// CompareEqual holds when field == operand.
	CompareEqual CompareOp = iota + 1
	// CompareNotEqual holds when field != operand.
	CompareNotEqual
	// CompareGreater holds when field > operand.
	CompareGreater
	// CompareLess holds when field < operand.
	CompareLess
)

// Compare is one condition of a conditional transaction. A missing key has
// version, create and mod revision 0; a value compare on a missing key never
// holds (whatever the operator), as in etcd.
type Compare struct {
	Key    []byte
	Target CompareTarget
	Op     CompareOp
	Value  []byte // operand of CompareValue
	Number int64  // operand of the other targets
}

// ReadCheck is a recorded point read: Key had ModRevision (0: absent).
type ReadCheck struct {
	Key         []byte
	ModRevision int64
}

// RangeCheck is a recorded range read of [Key, End) (End as in Range, never
// empty). The range is unchanged exactly when it still holds Count keys and
// none has a mod revision above MaxModRevision: any write after the read
// carries a larger revision, and a delete with no write lowers the count.
type RangeCheck struct {
	Key, End       []byte
	Count          int64
	MaxModRevision int64
}

// Txn is a transaction for ApplyTxn: checks validating an optimistic
// transaction's reads, compares choosing a branch, and the branches.
type Txn struct {
	Reads    []ReadCheck
	Ranges   []RangeCheck
	Compares []Compare
	Success  []Op
	Failure  []Op
	// Now is the preparing node's clock (unix ms): the checks, the
	// compares and the writes treat a key whose deadline is at or before
	// it as absent, as reads do. 0: every stored key counts.
	Now int64
}

// TxnResult is the outcome of ApplyTxn.
type TxnResult struct {
	Result
	// Conflict is nil when every check held; otherwise nothing was applied
	// and it describes the first check that failed.
	Conflict *Conflict
	// Succeeded reports that every compare held and Success ran (false
	// when Failure ran or on a conflict).
	Succeeded bool
}

// Conflict names the read that a transaction's validation found changed.
type Conflict struct {
	// Key is the conflicting key: the changed key of a point read, or for a
	// range the key written after the read (nil when a key was only deleted
	// from the range).
	Key []byte
	// RangeStart and RangeEnd are set when the conflict is in a range read.
	RangeStart, RangeEnd []byte
}

func (c *Conflict) String() string {
	switch {
	case c.RangeEnd == nil:
		return fmt.Sprintf("key %q", c.Key)
	case c.Key == nil:
		return fmt.Sprintf("a key deleted from read range [%q, %q)", c.RangeStart, c.RangeEnd)
	}
	return fmt.Sprintf("key %q in read range [%q, %q)", c.Key, c.RangeStart, c.RangeEnd)
}

// Errors returned by ValidateTxn.
var (
	ErrInvalidCompare = errors.New("engine: invalid compare")
	ErrInvalidCheck   = errors.New("engine: invalid read check")
)

// ValidateTxn reports whether every part of t is well formed. ApplyTxn
// refuses (applies nothing) a Txn that fails it, so a transaction is never
// partially applied because one op is bad.
func ValidateTxn(t *Txn) error {
	for i, c := range t.Compares {
		if len(c.Key) == 0 || len(c.Key) > MaxKeySize {
			return fmt.Errorf("%w %d: bad key", ErrInvalidCompare, i)
		}
		if c.Target < CompareValue || c.Target > CompareMod || c.Op < CompareEqual || c.Op > CompareLess {
			return fmt.Errorf("%w %d: bad target or operator", ErrInvalidCompare, i)
		}
	}
	for i, r := range t.Reads {
		if len(r.Key) == 0 || len(r.Key) > MaxKeySize || r.ModRevision < 0 {
			return fmt.Errorf("%w %d", ErrInvalidCheck, i)
		}
	}
	for i, r := range t.Ranges {
		if len(r.End) == 0 || ValidateOp(Op{Type: OpRange, Key: r.Key, End: r.End}) != nil || r.Count < 0 {
			return fmt.Errorf("%w: range %d", ErrInvalidCheck, i)
		}
	}
	for _, ops := range [][]Op{t.Success, t.Failure} {
		for i, op := range ops {
			if err := ValidateOp(op); err != nil {
				return fmt.Errorf("op %d: %w", i, err)
			}
		}
	}
	return nil
}

// ApplyTxn validates and applies t atomically under the write lock, as the
// entry at raft index index (ignored, ok=false, when index <= AppliedIndex).
// If t fails ValidateTxn, or a read or range check no longer holds, nothing
// is applied; otherwise the compares choose Success or Failure, whose ops run
// as in Apply at one new revision; when a put of the branch that runs names
// a lease that does not exist, nothing is applied and the error wraps
// ErrLeaseNotFound. The outcome depends only on the store's state and t, so
// every replica decides the same.
func (s *Store) ApplyTxn(index uint64, t *Txn) (TxnResult, bool, error) {
	if index <= s.applied.Load() {
		return TxnResult{Result: Result{Revision: s.rev.Load()}}, false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.applied.Store(index)
	if err := ValidateTxn(t); err != nil {
		return TxnResult{Result: Result{Revision: s.rev.Load()}}, true, err
	}
	res := TxnResult{Result: Result{Revision: s.rev.Load()}}
	if c := s.checkLocked(t); c != nil {
		res.Conflict = c
		return res, true, nil
	}
	res.Succeeded = true
	for i := range t.Compares {
		if !s.compareLocked(&t.Compares[i], t.Now) {
			res.Succeeded = false
			break
		}
	}
	ops := t.Success
	if !res.Succeeded {
		ops = t.Failure
	}
	// A put naming a lease that does not exist fails the branch whole, as
	// in etcd: checked before any op runs, so nothing is half applied. The
	// writes and the ranges see keys past their deadline as the compares
	// did (a range's limit counts only keys it returns).
	for i := range ops {
		if ops[i].Now == 0 {
			ops[i].Now = t.Now
		}
		if ops[i].Type == OpRange && ops[i].Range.Now == 0 {
			ops[i].Range.Now = t.Now
		}
		if l := ops[i].Lease; ops[i].Type == OpPut && l != 0 {
			if _, ok := s.leases[l]; !ok {
				return TxnResult{Result: Result{Revision: s.rev.Load()}}, true, fmt.Errorf("op %d: %w", i, ErrLeaseNotFound)
			}
		}
	}
	res.Ops = make([]OpResult, len(ops))
	s.applyLocked(ops, res.Ops)
	res.Revision = s.rev.Load()
	return res, true, nil
}

// checkLocked returns the first read or range check that no longer holds.
// A key past its deadline at t.Now is absent, as the reads saw it.
func (s *Store) checkLocked(t *Txn) *Conflict {
	for _, r := range t.Reads {
		var mod int64
		if e, ok := s.m.getBytes(r.Key); ok && !e.expiredAt(t.Now) {
			mod = e.mod()
		}
		if mod != r.ModRevision {
			return &Conflict{Key: r.Key}
		}
	}
	for _, r := range t.Ranges {
		var n int64
		var newer []byte
		s.ascendRange(r.Key, r.End, func(e *entry) bool {
			if e.expiredAt(t.Now) {
				return true
			}
			n++
			if e.mod() > r.MaxModRevision {
				newer = e.keyBytes()
				return false
			}
			return true
		})
		if newer != nil {
			return &Conflict{Key: newer, RangeStart: r.Key, RangeEnd: r.End}
		}
		if n != r.Count {
			return &Conflict{RangeStart: r.Key, RangeEnd: r.End}
		}
	}
	return nil
}

func (s *Store) compareLocked(c *Compare, now int64) bool {
	e, ok := s.m.getBytes(c.Key)
	if ok && e.expiredAt(now) {
		ok = false // past its deadline: absent, as for reads
	}
	var cmp int
	switch c.Target {
	case CompareValue:
		if !ok {
			return false
		}
		cmp = bytes.Compare(e.value(), c.Value)
	default:
		var field int64
		if ok {
			switch c.Target {
			case CompareVersion:
				field = e.version()
			case CompareCreate:
				field = e.create()
			case CompareMod:
				field = e.mod()
			}
		}
		switch {
		case field < c.Number:
			cmp = -1
		case field > c.Number:
			cmp = 1
		}
	}
	switch c.Op {
	case CompareEqual:
		return cmp == 0
	case CompareNotEqual:
		return cmp != 0
	case CompareGreater:
		return cmp > 0
	case CompareLess:
		return cmp < 0
	}
	return false
}

// RangeCheckOf summarises the result of a range read of [start, end) for a
// RangeCheck. kvs must be every key of the range as read (or, when the read
// was truncated, end must be narrowed to just after the last key returned).
func RangeCheckOf(start, end []byte, kvs []KeyValue) RangeCheck {
	rc := RangeCheck{Key: start, End: end, Count: int64(len(kvs))}
	for _, kv := range kvs {
		rc.MaxModRevision = max(rc.MaxModRevision, kv.ModRevision)
	}
	return rc
}
