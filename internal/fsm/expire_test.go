package fsm

import (
	"bytes"
	"testing"

	"github.com/kvdb/kvdb/internal/command"
	"github.com/kvdb/kvdb/internal/engine"
)

// TestExpiryEntriesApplyIdentically feeds the same log of TTL puts,
// lease grants and revokes, expire entries and EXPIRE/PERSIST
// read-modify-writes to two state machines, one of them restored from the
// other's snapshot half way, and checks each step's answer and the final
// hashes agree.
func TestExpiryEntriesApplyIdentically(t *testing.T) {
	must := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rmw := func(r command.RMW) []byte { return must(command.EncodeRMW(&r)) }
	log := []struct {
		data    []byte
		removed int
		n       int64 // RMW.N, -1: not a read-modify-write
		err     bool
	}{
		{must(command.EncodeLeaseGrant(5, 60)), 0, -1, false},
		{must(command.EncodeLeaseGrant(5, 60)), 0, -1, true}, // exists
		{command.EncodePutMeta([]byte("a"), []byte("1"), false, 1000, 0, 0), 0, -1, false},
		{command.EncodePutMeta([]byte("b"), []byte("2"), false, 0, 5, 0), 0, -1, false},
		{command.EncodePutMeta([]byte("c"), []byte("3"), false, 0, 5, 0), 0, -1, false},
		{command.EncodePut([]byte("d"), []byte("4"), false), 0, -1, false},
		{rmw(command.RMW{Op: command.RMWExpire, Key: []byte("d"), Deadline: 2000}), 0, 1, false},
		{rmw(command.RMW{Op: command.RMWExpire, Key: []byte("d"), Deadline: 3000, Condition: command.ExpireNX}), 0, 0, false},
		{rmw(command.RMW{Op: command.RMWExpire, Key: []byte("d"), Deadline: 3000, Condition: command.ExpireGT}), 0, 1, false},
		{rmw(command.RMW{Op: command.RMWPersist, Key: []byte("a")}), 0, 1, false},
		{rmw(command.RMW{Op: command.RMWPersist, Key: []byte("a")}), 0, 0, false},
		{rmw(command.RMW{Op: command.RMWExpire, Key: []byte("missing"), Deadline: 10}), 0, 0, false},
		// An INCR keeps the deadline; one past its deadline (by the
		// preparer's clock) starts from absent.
		{command.EncodePutMeta([]byte("n"), []byte("41"), false, 5000, 0, 0), 0, -1, false},
		{rmw(command.RMW{Op: command.RMWIncrBy, Key: []byte("n"), Delta: 1, Now: 4000}), 0, 42, false},
		{rmw(command.RMW{Op: command.RMWIncrBy, Key: []byte("n"), Delta: 1, Now: 6000}), 0, 1, false},
		{must(command.EncodeExpire([]engine.EvictKey{{Key: []byte("d"), ModRevision: 7}})), 0, -1, false}, // stale mod revision
		{must(command.EncodeLeaseRevoke(5, true)), 2, -1, false},
		{must(command.EncodeLeaseRevoke(5, false)), 0, -1, true}, // gone
	}
	a, b := engine.New(), engine.New()
	fa, fb := New(a, nil, nil), New(b, nil, nil)
	for i, e := range log {
		idx := uint64(i + 1)
		if i == len(log)/2 {
			var buf bytes.Buffer
			if _, err := fa.Snapshot().WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			if err := fb.Restore(&buf); err != nil {
				t.Fatal(err)
			}
		}
		ra := fa.Apply(idx, e.data).(Result)
		var rb Result
		if i >= len(log)/2 {
			rb = fb.Apply(idx, e.data).(Result)
		}
		if (ra.Err != nil) != e.err || ra.Removed != e.removed {
			t.Fatalf("entry %d: err %v removed %d, want err %v removed %d", i, ra.Err, ra.Removed, e.err, e.removed)
		}
		if e.n >= 0 && (ra.RMW == nil || ra.RMW.N != e.n) {
			t.Fatalf("entry %d: RMW %+v, want N %d", i, ra.RMW, e.n)
		}
		if i >= len(log)/2 && (ra.Removed != rb.Removed || (ra.Err == nil) != (rb.Err == nil)) {
			t.Fatalf("entry %d: replicas answered differently", i)
		}
	}
	if a.Hash() != b.Hash() {
		t.Fatal("hashes differ")
	}
	if kv, _ := a.Get([]byte("d")); kv.Deadline != 3000 {
		t.Fatalf("d's deadline %d", kv.Deadline)
	}
	if kv, _ := a.Get([]byte("n")); kv.Deadline != 0 || string(kv.Value) != "1" {
		t.Fatalf("n after INCR of an expired key: %+v", kv)
	}
	if _, ok := a.Get([]byte("b")); ok {
		t.Fatal("the revoked lease's key survived")
	}
	if a.ExpiredKeys() != 2 {
		t.Fatalf("expired %d", a.ExpiredKeys())
	}
}
