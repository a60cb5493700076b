package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"testing"
)

func putTTL(k, v string, deadline int64) Op {
	return Op{Type: OpPut, Key: []byte(k), Value: []byte(v), Deadline: deadline}
}

func putLease(k, v string, lease int64) Op {
	return Op{Type: OpPut, Key: []byte(k), Value: []byte(v), Lease: lease}
}

func (a *applier) grant(t testing.TB, id, ttl int64) {
	t.Helper()
	a.idx++
	if err := a.ApplyLeaseGrant(a.idx, id, ttl); err != nil {
		t.Fatalf("grant %d: %v", id, err)
	}
}

// TestEntryMetaCostsNothingWithout: a key without deadline or lease takes
// exactly the bytes it took before either existed; one with them takes
// the varints' bytes more, and MemoryUsage counts them exactly.
func TestEntryMetaCostsNothingWithout(t *testing.T) {
	tests := []struct {
		name            string
		deadline, lease int64
		extra           int
	}{
		{"plain", 0, 0, 0},
		{"deadline", 1_700_000_000_000, 0, varintLen(1_700_000_000_000)},
		{"lease", 0, 42, varintLen(42)},
		{"both", 1_700_000_000_000, 1 << 60, varintLen(1_700_000_000_000) + varintLen(1<<60)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEntryMeta([]byte("key"), []byte("value"), 1, 2, 3, tc.deadline, tc.lease)
			if got, want := e.tailLen(), tailSize(1, 2, 3)+tc.extra; got != want {
				t.Fatalf("tail %d bytes, want %d", got, want)
			}
			if d, l := e.meta(); d != tc.deadline || l != tc.lease {
				t.Fatalf("meta = %d, %d", d, l)
			}
			if c, m, v := e.revisions(); c != 1 || m != 2 || v != 3 {
				t.Fatalf("revisions = %d %d %d", c, m, v)
			}
			if tc.extra == 0 && e.size() != newEntry([]byte("key"), []byte("value"), 1, 2, 3).size() {
				t.Fatal("a plain entry grew")
			}
			if e.size() > EntryGrowthMeta(3, 5) {
				t.Fatalf("size %d over EntryGrowthMeta %d", e.size(), EntryGrowthMeta(3, 5))
			}
		})
	}
}

func TestApplyExpireAndLeases(t *testing.T) {
	a := newApplier()
	a.grant(t, 7, 10)
	a.apply(t, putTTL("a", "1", 100), putTTL("b", "2", 200), put("c", "3"), putLease("d", "4", 7), putLease("e", "5", 7))
	if n := a.KeysWithDeadline(); n != 2 {
		t.Fatalf("%d keys with deadlines", n)
	}
	// A put on a missing lease changes nothing.
	res := a.apply(t, putLease("x", "1", 99))
	if !res.Ops[0].NoLease {
		t.Fatal("put on a missing lease applied")
	}
	if _, ok := a.Get([]byte("x")); ok {
		t.Fatal("x exists")
	}
	due := a.DueKeys(150, 10)
	if len(due) != 1 || string(due[0].Key) != "a" {
		t.Fatalf("due at 150: %v", due)
	}
	// Rewriting b after it was chosen keeps it; a goes.
	chosen := a.DueKeys(250, 10)
	a.apply(t, putTTL("b", "again", 500))
	rev := a.Revision()
	a.idx++
	n, ok := a.ApplyExpire(a.idx, chosen)
	if !ok || n != 1 || a.Revision() != rev+1 {
		t.Fatalf("expire: n=%d ok=%v rev %d -> %d", n, ok, rev, a.Revision())
	}
	if _, ok := a.Get([]byte("b")); !ok {
		t.Fatal("the rewritten key expired")
	}
	// A put without a deadline clears it: the key is no longer due.
	a.apply(t, put("b", "plain"))
	if got := a.DueKeys(1000, 10); len(got) != 0 {
		t.Fatalf("due after clearing: %v", got)
	}
	// Reads past a deadline hide the key when asked to.
	a.apply(t, putTTL("f", "6", 300))
	if r := a.Range([]byte("a"), []byte{0}, RangeOptions{Now: 400}); r.Count != 4 || len(r.KVs) != 4 {
		t.Fatalf("range at 400: %d keys, count %d", len(r.KVs), r.Count)
	}
	if r := a.Range([]byte("a"), []byte{0}, RangeOptions{Now: 400, CountOnly: true}); r.Count != 4 {
		t.Fatalf("count at 400: %d", r.Count)
	}
	if r := a.Range([]byte("f"), nil, RangeOptions{Now: 400}); r.Count != 0 {
		t.Fatal("single-key range returned an expired key")
	}
	if r := a.Range([]byte("a"), []byte{0}, RangeOptions{}); r.Count != 5 {
		t.Fatalf("range without a clock: %d", r.Count)
	}
	// The leader hides the keys of a lease past its deadline.
	hide := RangeOptions{HideLeases: map[int64]struct{}{7: {}}}
	if r := a.Range([]byte("a"), []byte{0}, hide); r.Count != 3 || len(r.KVs) != 3 {
		t.Fatalf("range hiding lease 7: %d keys, count %d", len(r.KVs), r.Count)
	}
	if r := a.Range([]byte("d"), nil, hide); r.Count != 0 {
		t.Fatal("single-key range returned a key of a hidden lease")
	}
	hide.Limit, hide.CountOnly = 1, false
	if r := a.Range([]byte("a"), []byte{0}, hide); r.Count != 3 || len(r.KVs) != 1 || !r.More {
		t.Fatalf("limited range hiding lease 7: %d keys, count %d, more %v", len(r.KVs), r.Count, r.More)
	}
	// Revoking the lease deletes its keys at one revision.
	rev = a.Revision()
	a.idx++
	if n, err := a.ApplyLeaseRevoke(a.idx, 7, true); err != nil || n != 2 || a.Revision() != rev+1 {
		t.Fatalf("revoke: %d %v, rev %d -> %d", n, err, rev, a.Revision())
	}
	if a.ExpiredKeys() != 3 {
		t.Fatalf("expired %d", a.ExpiredKeys())
	}
	a.idx++
	if _, err := a.ApplyLeaseRevoke(a.idx, 7, false); err != ErrLeaseNotFound {
		t.Fatalf("second revoke: %v", err)
	}
	a.idx++
	if err := a.ApplyLeaseGrant(a.idx, 8, 1); err != nil {
		t.Fatal(err)
	}
	a.idx++
	if err := a.ApplyLeaseGrant(a.idx, 8, 1); err != ErrLeaseExists {
		t.Fatalf("duplicate grant: %v", err)
	}
	if msg := a.CheckConsistency(); msg != "" {
		t.Fatal(msg)
	}
}

// TestSnapshotKeepsDeadlinesAndLeases round-trips deadlines, leases and
// the lease table through a snapshot, and reads a format-1 snapshot.
func TestSnapshotKeepsDeadlinesAndLeases(t *testing.T) {
	a := newApplier()
	a.grant(t, 3, 60)
	a.grant(t, 9, 5) // no keys: still in the snapshot
	a.apply(t, putTTL("a", "1", 1_700_000_000_123), putLease("b", "2", 3), put("c", "3"))
	data := snapshotBytes(t, a.Store)
	s := New()
	if err := s.Restore(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if s.Hash() != a.Hash() || s.MemoryUsage() != a.MemoryUsage() {
		t.Fatal("restored state differs")
	}
	if kv, _ := s.Get([]byte("a")); kv.Deadline != 1_700_000_000_123 {
		t.Fatalf("deadline %d", kv.Deadline)
	}
	if ttl, keys, ok := s.Lease(3, true); !ok || ttl != 60 || len(keys) != 1 || string(keys[0]) != "b" {
		t.Fatalf("lease 3: %d %q %v", ttl, keys, ok)
	}
	if got := s.Leases(); len(got) != 2 {
		t.Fatalf("leases %v", got)
	}
	if msg := s.CheckConsistency(); msg != "" {
		t.Fatal(msg)
	}

	// Format 1: no flags byte, no lease section.
	old := New()
	old.Apply(1, []Op{put("k", "v"), put("l", "w")})
	v1 := formatV1(t, old)
	s = New()
	if err := s.Restore(bytes.NewReader(v1)); err != nil {
		t.Fatalf("format 1: %v", err)
	}
	if s.Hash() != old.Hash() || s.Len() != 2 {
		t.Fatal("format-1 snapshot read wrong")
	}
}

// formatV1 writes s as the format-1 snapshot (no deadlines or leases).
func formatV1(t testing.TB, s *Store) []byte {
	t.Helper()
	sn := s.Snapshot()
	var b []byte
	b = append(b, snapshotMagic...)
	b = binary.BigEndian.AppendUint16(b, 1)
	b = binary.BigEndian.AppendUint64(b, sn.index)
	b = binary.BigEndian.AppendUint64(b, uint64(sn.rev))
	b = binary.BigEndian.AppendUint64(b, uint64(sn.tree.Len()))
	sn.tree.Scan(func(e *entry) bool {
		if e.flags() != 0 {
			t.Fatal("format 1 cannot hold deadlines")
		}
		b = binary.AppendUvarint(b, uint64(e.klen))
		b = append(b, e.keyBytes()...)
		b = binary.AppendUvarint(b, uint64(e.vlen))
		b = append(b, e.value()...)
		b = append(b, e.tail()...)
		return true
	})
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// TestVolatileEvictionNeverTakesPlainKeys: the volatile policies choose
// only keys with a deadline, whatever their recency; the all-keys ones may
// choose any.
func TestVolatileEvictionNeverTakesPlainKeys(t *testing.T) {
	a := newApplier()
	for i := range 2000 {
		if i%4 == 0 {
			a.apply(t, putTTL(fmt.Sprintf("v%04d", i), "x", int64(1_000_000+i)))
		} else {
			a.apply(t, put(fmt.Sprintf("p%04d", i), "x"))
		}
	}
	for _, tc := range []struct {
		name   string
		policy EvictPolicy
	}{
		{"volatile-lru", EvictVolatileLRU},
		{"volatile-ttl", EvictVolatileTTL},
		{"volatile-random", EvictVolatileRandom},
		{"allkeys-random", EvictAllKeysRandom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := NewEvictorPolicy(1, tc.policy)
			keys := ev.Choose(a.Store, 1<<40, 400)
			if len(keys) == 0 {
				t.Fatal("nothing chosen")
			}
			plain := 0
			var earliest int64 = 1 << 62
			for _, k := range keys {
				kv, _ := a.Get(k.Key)
				if kv.Deadline == 0 {
					plain++
				} else {
					earliest = min(earliest, kv.Deadline)
				}
			}
			if tc.policy.volatile() && plain > 0 {
				t.Fatalf("%d keys without a TTL chosen", plain)
			}
			if tc.policy == EvictAllKeysRandom && plain == 0 {
				t.Fatal("allkeys-random chose only volatile keys")
			}
			if tc.policy == EvictVolatileTTL {
				first, _ := a.Get(keys[0].Key)
				if first.Deadline > 1_000_000+500 {
					t.Fatalf("volatile-ttl's first choice has deadline %d", first.Deadline)
				}
			}
		})
	}
	// With no volatile key, a volatile policy chooses nothing.
	b := newApplier()
	b.apply(t, put("a", "1"), put("b", "2"))
	if keys := NewEvictorPolicy(1, EvictVolatileLRU).Choose(b.Store, 1<<20, 10); len(keys) != 0 {
		t.Fatalf("chose %v", keys)
	}
}

// TestLeasePage: pages of lease ids in order, from after, at most limit,
// with more set exactly when ids were left out; the pages of a listing
// cover every lease once.
func TestLeasePage(t *testing.T) {
	a := newApplier()
	for _, id := range []int64{50, 10, 90, 30, 70} {
		a.grant(t, id, 60)
	}
	for _, tc := range []struct {
		after int64
		limit int
		want  []int64
		more  bool
	}{
		{0, 2, []int64{10, 30}, true},
		{30, 2, []int64{50, 70}, true},
		{70, 2, []int64{90}, false},
		{90, 2, nil, false},
		{0, 5, []int64{10, 30, 50, 70, 90}, false},
		{0, 100, []int64{10, 30, 50, 70, 90}, false},
		{49, 1, []int64{50}, true},
		{-5, 1, []int64{10}, true},
		{0, 0, nil, true},
		{90, 0, nil, false},
	} {
		got, more := a.LeasePage(tc.after, tc.limit)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) || more != tc.more {
			t.Errorf("LeasePage(%d, %d) = %v %v, want %v %v", tc.after, tc.limit, got, more, tc.want, tc.more)
		}
	}
	// Many leases in a random order: the pages list them all, sorted.
	b := newApplier()
	want := map[int64]bool{}
	for i := range 1000 {
		id := int64(i*7919%100_003 + 1)
		b.grant(t, id, 60)
		want[id] = true
	}
	var all []int64
	after := int64(0)
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("listing never ended")
		}
		page, more := b.LeasePage(after, 64)
		all = append(all, page...)
		if !more {
			break
		}
		after = page[len(page)-1]
	}
	if len(all) != len(want) {
		t.Fatalf("listed %d leases, want %d", len(all), len(want))
	}
	for i, id := range all {
		if !want[id] || (i > 0 && all[i-1] >= id) {
			t.Fatalf("listing out of order or unknown id at %d: %v", i, all[max(i-1, 0):i+1])
		}
	}
}

// TestLeasesCountInMemoryUsage: every lease adds LeaseOverhead to
// MemoryUsage until it is revoked, and a snapshot restores the same
// figure.
func TestLeasesCountInMemoryUsage(t *testing.T) {
	a := newApplier()
	a.apply(t, put("k", "v"))
	base := a.MemoryUsage()
	for id := int64(1); id <= 3; id++ {
		a.grant(t, id, 60)
	}
	if got := a.MemoryUsage() - base; got != 3*LeaseOverhead {
		t.Fatalf("three leases add %d, want %d", got, 3*LeaseOverhead)
	}
	a.idx++
	if _, err := a.ApplyLeaseRevoke(a.idx, 2, false); err != nil {
		t.Fatal(err)
	}
	if got := a.MemoryUsage() - base; got != 2*LeaseOverhead {
		t.Fatalf("after a revoke: %d, want %d", got, 2*LeaseOverhead)
	}
	var buf bytes.Buffer
	if _, err := a.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	b := New()
	if err := b.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if b.MemoryUsage() != a.MemoryUsage() {
		t.Fatalf("restored %d, want %d", b.MemoryUsage(), a.MemoryUsage())
	}
}
