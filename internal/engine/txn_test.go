package engine

import (
	"errors"
	"strings"
	"testing"
)

func TestCompareOperators(t *testing.T) {
	s := New()
	s.Apply(1, []Op{put("k", "m")})     // rev 1: k create=1 mod=1 ver=1
	s.Apply(2, []Op{put("other", "x")}) // rev 2
	s.Apply(3, []Op{put("k", "m")})     // rev 3: k create=1 mod=3 ver=2
	k := []byte("k")
	tests := []struct {
		name string
		c    Compare
		want bool
	}{
		{"value eq", Compare{Key: k, Target: CompareValue, Op: CompareEqual, Value: []byte("m")}, true},
		{"value eq other", Compare{Key: k, Target: CompareValue, Op: CompareEqual, Value: []byte("n")}, false},
		{"value ne", Compare{Key: k, Target: CompareValue, Op: CompareNotEqual, Value: []byte("n")}, true},
		{"value gt", Compare{Key: k, Target: CompareValue, Op: CompareGreater, Value: []byte("l")}, true},
		{"value gt equal", Compare{Key: k, Target: CompareValue, Op: CompareGreater, Value: []byte("m")}, false},
		{"value lt", Compare{Key: k, Target: CompareValue, Op: CompareLess, Value: []byte("mm")}, true},
		{"version eq", Compare{Key: k, Target: CompareVersion, Op: CompareEqual, Number: 2}, true},
		{"version gt", Compare{Key: k, Target: CompareVersion, Op: CompareGreater, Number: 2}, false},
		{"version lt", Compare{Key: k, Target: CompareVersion, Op: CompareLess, Number: 3}, true},
		{"create eq", Compare{Key: k, Target: CompareCreate, Op: CompareEqual, Number: 1}, true},
		{"create ne", Compare{Key: k, Target: CompareCreate, Op: CompareNotEqual, Number: 1}, false},
		{"mod eq", Compare{Key: k, Target: CompareMod, Op: CompareEqual, Number: 3}, true},
		{"mod gt", Compare{Key: k, Target: CompareMod, Op: CompareGreater, Number: 2}, true},
		{"mod lt", Compare{Key: k, Target: CompareMod, Op: CompareLess, Number: 3}, false},
		{"missing version eq 0", Compare{Key: []byte("nope"), Target: CompareVersion, Op: CompareEqual, Number: 0}, true},
		{"missing mod lt 1", Compare{Key: []byte("nope"), Target: CompareMod, Op: CompareLess, Number: 1}, true},
		{"missing value ne", Compare{Key: []byte("nope"), Target: CompareValue, Op: CompareNotEqual, Value: []byte("x")}, false},
		{"missing value eq empty", Compare{Key: []byte("nope"), Target: CompareValue, Op: CompareEqual}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := s.compareLocked(&tc.c, 0); got != tc.want {
				t.Fatalf("compare = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestCompareExpiredKey: with the preparing node's clock in the
// transaction, a key past its deadline (its delete not applied yet) is
// absent to the compares; without it (entries from before the clock was
// logged) it is present, as it was.
func TestCompareExpiredKey(t *testing.T) {
	s := New()
	s.Apply(1, []Op{{Type: OpPut, Key: []byte("k"), Value: []byte("v"), Deadline: 1000}})
	absent := Compare{Key: []byte("k"), Target: CompareVersion, Op: CompareEqual, Number: 0}
	for _, tc := range []struct {
		now  int64
		want bool
	}{{0, false}, {999, false}, {1000, true}, {5000, true}} {
		if got := s.compareLocked(&absent, tc.now); got != tc.want {
			t.Errorf("version == 0 at now=%d: %v, want %v", tc.now, got, tc.want)
		}
	}
	// Through ApplyTxn: SET NX on the expired key succeeds.
	res, _, err := s.ApplyTxn(2, &Txn{Compares: []Compare{absent}, Success: []Op{put("k", "new")}, Now: 1000})
	if err != nil || !res.Succeeded {
		t.Fatalf("ApplyTxn = %+v, %v", res, err)
	}
	if kv, ok := s.Get([]byte("k")); !ok || string(kv.Value) != "new" || kv.Deadline != 0 {
		t.Fatalf("k = %+v %v", kv, ok)
	}
}

func TestApplyTxnInvalidAppliesNothing(t *testing.T) {
	s := New()
	txn := &Txn{Success: []Op{put("a", "1"), {Type: OpPut}}}
	res, ok, err := s.ApplyTxn(1, txn)
	if err == nil || !ok || res.Revision != 0 || s.Len() != 0 || s.AppliedIndex() != 1 {
		t.Fatalf("ApplyTxn = %+v, %v, %v; len %d applied %d", res, ok, err, s.Len(), s.AppliedIndex())
	}
	bad := []*Txn{
		{Compares: []Compare{{Key: []byte("k")}}},
		{Reads: []ReadCheck{{Key: nil}}},
		{Ranges: []RangeCheck{{Key: []byte("b"), End: []byte("a")}}},
		{Ranges: []RangeCheck{{Key: []byte("b")}}},
	}
	for i, txn := range bad {
		if err := ValidateTxn(txn); err == nil {
			t.Errorf("txn %d: ValidateTxn accepted %+v", i, txn)
		}
	}
}

// TestApplyTxnLease: a put of the branch that runs attaches its key to the
// lease; a lease missing when the transaction applies fails it whole
// (consuming the index, moving nothing), and only the branch that runs is
// checked.
func TestApplyTxnLease(t *testing.T) {
	s := New()
	if err := s.ApplyLeaseGrant(1, 7, 60); err != nil {
		t.Fatal(err)
	}
	free := Compare{Key: []byte("lock"), Target: CompareCreate, Op: CompareEqual, Number: 0}
	res, _, err := s.ApplyTxn(2, &Txn{Compares: []Compare{free},
		Success: []Op{putLease("lock", "me", 7)}, Failure: []Op{putLease("x", "y", 99)}})
	if err != nil || !res.Succeeded {
		t.Fatalf("ApplyTxn = %+v, %v", res, err)
	}
	if _, keys, _ := s.Lease(7, true); len(keys) != 1 || string(keys[0]) != "lock" {
		t.Fatalf("lease 7 holds %q, want [lock]", keys)
	}
	rev := s.Revision()
	res, ok, err := s.ApplyTxn(3, &Txn{Success: []Op{put("a", "1"), putLease("b", "2", 99)}})
	if !errors.Is(err, ErrLeaseNotFound) || !ok || !strings.Contains(err.Error(), "op 1") {
		t.Fatalf("ApplyTxn with a missing lease = %v, %v; want ErrLeaseNotFound naming op 1", ok, err)
	}
	if _, found := s.Get([]byte("a")); found || s.Revision() != rev || res.Revision != rev || s.AppliedIndex() != 3 {
		t.Fatalf("the failed transaction applied something: a=%v revision %d (was %d) applied %d", found, s.Revision(), rev, s.AppliedIndex())
	}
	if _, err := s.ApplyLeaseRevoke(4, 7, false); err != nil {
		t.Fatal(err)
	}
	if _, found := s.Get([]byte("lock")); found {
		t.Fatal("revoking lease 7 left lock")
	}
}

// TestWritesSeeExpiredKeysAbsent: with the preparing node's clock, a key
// past its deadline whose delete has not been applied is absent to writes
// as it is to reads: a put starts it anew (create revision, version 1, no
// previous key-value for the caller or for watchers), a delete removes it
// without counting or returning it, a transaction's read check sees it
// absent. Without the clock (entries written before it existed) it counts,
// as it did.
func TestWritesSeeExpiredKeysAbsent(t *testing.T) {
	const deadline, now = 1000, 2000
	setup := func() *Store {
		s := New()
		s.Apply(1, []Op{putTTL("a", "old", deadline), putTTL("b", "old", deadline), putTTL("c", "live", 9000)})
		return s
	}
	tests := []struct {
		name        string
		op          Op
		wantCreate  int64 // of key a after the op (0: absent)
		wantVersion int64
		wantPrev    int // previous key-values returned
		wantDeleted int64
	}{
		{"put with the clock", Op{Type: OpPut, Key: []byte("a"), Value: []byte("new"), PrevKV: true, Now: now}, 2, 1, 0, 0},
		{"put without the clock", Op{Type: OpPut, Key: []byte("a"), Value: []byte("new"), PrevKV: true}, 1, 2, 1, 0},
		{"put before the deadline", Op{Type: OpPut, Key: []byte("a"), Value: []byte("new"), PrevKV: true, Now: deadline - 1}, 1, 2, 1, 0},
		{"delete with the clock", Op{Type: OpDelete, Key: []byte("a"), PrevKV: true, Now: now}, 0, 0, 0, 0},
		{"delete without the clock", Op{Type: OpDelete, Key: []byte("a"), PrevKV: true}, 0, 0, 1, 1},
		{"range delete with the clock", Op{Type: OpDeleteRange, Key: []byte("a"), End: []byte("z"), PrevKV: true, Now: now}, 0, 0, 1, 1},
		{"range delete without the clock", Op{Type: OpDeleteRange, Key: []byte("a"), End: []byte("z"), PrevKV: true}, 0, 0, 3, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := setup()
			var obs recordingObserver
			s.SetObserver(&obs)
			res, _ := s.Apply(2, []Op{tc.op})
			r := res.Ops[0]
			if len(r.Prev) != tc.wantPrev || r.Deleted != tc.wantDeleted {
				t.Fatalf("prev %d deleted %d, want %d and %d", len(r.Prev), r.Deleted, tc.wantPrev, tc.wantDeleted)
			}
			kv, ok := s.Get([]byte("a"))
			if tc.wantCreate == 0 {
				if ok {
					t.Fatalf("a = %+v, want it deleted", kv)
				}
				return
			}
			if !ok || kv.CreateRevision != tc.wantCreate || kv.Version != tc.wantVersion || kv.Deadline != 0 {
				t.Fatalf("a = %+v, want create %d version %d and no deadline", kv, tc.wantCreate, tc.wantVersion)
			}
			// Watchers see the expired key go, then the new one; or the
			// overwrite of a live key.
			want := "2: DELETE a=/0/2/0 prev=old, PUT a=new/2/2/1"
			if tc.wantPrev > 0 {
				want = "2: PUT a=new/1/2/2 prev=old"
			}
			if obs.lines[0] != want {
				t.Fatalf("watch events %q, want %q", obs.lines[0], want)
			}
		})
	}

	s := setup()
	// An interactive transaction read a as absent (hidden) and writes it.
	res, _, err := s.ApplyTxn(2, &Txn{Reads: []ReadCheck{{Key: []byte("a")}},
		Ranges: []RangeCheck{{Key: []byte("a"), End: []byte("c"), Count: 0}}, Success: []Op{put("a", "mine")}, Now: now})
	if err != nil || res.Conflict != nil {
		t.Fatalf("commit after reading an expired key as absent: %+v, %v", res.Conflict, err)
	}
	if kv, _ := s.Get([]byte("a")); kv.Version != 1 || kv.CreateRevision != 2 {
		t.Fatalf("a = %+v, want a new key", kv)
	}
	if res, _, _ := s.ApplyTxn(3, &Txn{Reads: []ReadCheck{{Key: []byte("b")}}, Success: []Op{put("b", "x")}}); res.Conflict == nil {
		t.Fatal("without the clock, an expired key read as absent must conflict as before")
	}
	// A transaction's range skips the expired b: its limit of one returns
	// the live c, and the count leaves b out.
	res, _, err = s.ApplyTxn(4, &Txn{Success: []Op{{Type: OpRange, Key: []byte("b"), End: []byte("z"), Range: RangeOptions{Limit: 1}}}, Now: now})
	if r := res.Ops[0]; err != nil || len(r.KVs) != 1 || string(r.KVs[0].Key) != "c" || r.Count != 1 || r.More {
		t.Fatalf("range in a transaction = %+v, %v; want c alone", r, err)
	}
}

// TestEarliestDeadline: the lock-free earliest deadline follows every key
// that gains or loses one.
func TestEarliestDeadline(t *testing.T) {
	s := New()
	if d := s.EarliestDeadline(); d != 0 {
		t.Fatalf("an empty store's earliest deadline = %d", d)
	}
	s.Apply(1, []Op{putTTL("a", "v", 1000), putTTL("b", "v", 3000), putTTL("c", "v", 2000)})
	steps := []struct {
		op   Op
		want int64
	}{
		{Op{}, 1000},
		{put("a", "no deadline"), 2000},
		{Op{Type: OpDelete, Key: []byte("c")}, 3000},
		{putTTL("b", "v", 500), 500},
		{Op{Type: OpDelete, Key: []byte("b")}, 0},
	}
	for i, st := range steps {
		if st.op.Type != 0 {
			s.Apply(uint64(i+2), []Op{st.op})
		}
		if got := s.EarliestDeadline(); got != st.want {
			t.Fatalf("step %d: EarliestDeadline = %d, want %d", i, got, st.want)
		}
	}
}
