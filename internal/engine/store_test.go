package engine

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
)

func put(k, v string) Op      { return Op{Type: OpPut, Key: []byte(k), Value: []byte(v)} }
func del(k string) Op         { return Op{Type: OpDelete, Key: []byte(k)} }
func delRange(k, e string) Op { return Op{Type: OpDeleteRange, Key: []byte(k), End: []byte(e)} }

// applier feeds a Store consecutive raft indexes.
type applier struct {
	*Store
	idx uint64
}

func newApplier() *applier { return &applier{Store: New()} }

func (a *applier) apply(t testing.TB, ops ...Op) Result {
	t.Helper()
	a.idx++
	res, ok := a.Apply(a.idx, ops)
	if !ok {
		t.Fatalf("Apply(%d) ignored", a.idx)
	}
	if msg := a.checkConsistency(); msg != "" {
		t.Fatalf("inconsistent after Apply: %s", msg)
	}
	return res
}

type kvWant struct {
	key                  string
	value                string
	create, mod, version int64
}

func checkKV(t *testing.T, s *Store, w kvWant) {
	t.Helper()
	kv, ok := s.Get([]byte(w.key))
	if !ok {
		t.Fatalf("Get(%q): missing", w.key)
	}
	got := kvWant{string(kv.Key), string(kv.Value), kv.CreateRevision, kv.ModRevision, kv.Version}
	if got != w {
		t.Fatalf("Get(%q) = %+v, want %+v", w.key, got, w)
	}
}

func TestRevisionsAndVersions(t *testing.T) {
	type step struct {
		ops     []Op
		wantRev int64
		present []kvWant
		absent  []string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"put creates at rev 1", []step{
			{ops: []Op{put("a", "1")}, wantRev: 1, present: []kvWant{{"a", "1", 1, 1, 1}}},
		}},
		{"second put bumps mod and version", []step{
			{ops: []Op{put("a", "1")}, wantRev: 1},
			{ops: []Op{put("a", "2")}, wantRev: 2, present: []kvWant{{"a", "2", 1, 2, 2}}},
		}},
		{"delete then recreate resets create and version", []step{
			{ops: []Op{put("a", "1")}, wantRev: 1},
			{ops: []Op{put("a", "2")}, wantRev: 2},
			{ops: []Op{del("a")}, wantRev: 3, absent: []string{"a"}},
			{ops: []Op{put("a", "3")}, wantRev: 4, present: []kvWant{{"a", "3", 4, 4, 1}}},
		}},
		{"deleting missing key does not move revision", []step{
			{ops: []Op{put("a", "1")}, wantRev: 1},
			{ops: []Op{del("zz")}, wantRev: 1},
			{ops: []Op{delRange("x", "y")}, wantRev: 1},
		}},
		{"two puts in one apply", []step{
			{ops: []Op{put("a", "1"), put("a", "2")}, wantRev: 1, present: []kvWant{{"a", "2", 1, 1, 2}}},
		}},
		{"one revision per batch", []step{
			{ops: []Op{put("a", "1"), put("b", "1"), put("c", "1")}, wantRev: 1,
				present: []kvWant{{"a", "1", 1, 1, 1}, {"b", "1", 1, 1, 1}, {"c", "1", 1, 1, 1}}},
		}},
		{"put delete put in one batch", []step{
			{ops: []Op{put("a", "1")}, wantRev: 1},
			{ops: []Op{put("a", "2"), del("a"), put("a", "3")}, wantRev: 2, present: []kvWant{{"a", "3", 2, 2, 1}}},
		}},
		{"delete range", []step{
			{ops: []Op{put("a", "1"), put("b", "1"), put("c", "1"), put("d", "1")}, wantRev: 1},
			{ops: []Op{delRange("b", "d")}, wantRev: 2, present: []kvWant{{"a", "1", 1, 1, 1}, {"d", "1", 1, 1, 1}}, absent: []string{"b", "c"}},
			{ops: []Op{delRange("a", "\x00")}, wantRev: 3, absent: []string{"a", "d"}},
		}},
		{"invalid op skipped", []step{
			{ops: []Op{put("", "1"), {Type: 99, Key: []byte("x")}}, wantRev: 0, absent: []string{"", "x"}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newApplier()
			for i, st := range tc.steps {
				res := a.apply(t, st.ops...)
				if res.Revision != st.wantRev || a.Revision() != st.wantRev {
					t.Fatalf("step %d: revision %d/%d, want %d", i, res.Revision, a.Revision(), st.wantRev)
				}
				for _, w := range st.present {
					checkKV(t, a.Store, w)
				}
				for _, k := range st.absent {
					if _, ok := a.Get([]byte(k)); ok {
						t.Fatalf("step %d: %q still present", i, k)
					}
				}
			}
		})
	}
}

func TestPrevKV(t *testing.T) {
	a := newApplier()
	a.apply(t, put("a", "1"), put("b", "2"), put("c", "3"))
	p := put("a", "x")
	p.PrevKV = true
	d := del("b")
	d.PrevKV = true
	dm := del("missing")
	dm.PrevKV = true
	dr := delRange("c", "\x00")
	dr.PrevKV = true
	res := a.apply(t, p, d, dm, dr)
	if res.Revision != 2 {
		t.Fatalf("rev %d", res.Revision)
	}
	want := []struct {
		prev    []string
		deleted int64
	}{{[]string{"a=1"}, 0}, {[]string{"b=2"}, 1}, {nil, 0}, {[]string{"c=3"}, 1}}
	for i, w := range want {
		var got []string
		for _, kv := range res.Ops[i].Prev {
			got = append(got, string(kv.Key)+"="+string(kv.Value))
		}
		if fmt.Sprint(got) != fmt.Sprint(w.prev) || res.Ops[i].Deleted != w.deleted {
			t.Fatalf("op %d: prev %v deleted %d, want %v %d", i, got, res.Ops[i].Deleted, w.prev, w.deleted)
		}
	}
	// Without PrevKV nothing is returned.
	res = a.apply(t, put("a", "y"))
	if res.Ops[0].Prev != nil {
		t.Fatal("prev returned without PrevKV")
	}
}

func TestApplyCopiesInput(t *testing.T) {
	s := New()
	k, v := []byte("key"), []byte("val")
	s.Apply(1, []Op{{Type: OpPut, Key: k, Value: v}})
	k[0], v[0] = 'X', 'X'
	kv, ok := s.Get([]byte("key"))
	if !ok || string(kv.Value) != "val" {
		t.Fatalf("store aliased caller buffers: %q %v", kv.Value, ok)
	}
}

func TestIdempotentApply(t *testing.T) {
	s := New()
	if _, ok := s.Apply(0, []Op{put("a", "1")}); ok {
		t.Fatal("index 0 must be ignored")
	}
	if res, ok := s.Apply(5, []Op{put("a", "1")}); !ok || res.Revision != 1 {
		t.Fatalf("apply 5: %v %v", res, ok)
	}
	h := s.Hash()
	for _, idx := range []uint64{1, 4, 5} {
		res, ok := s.Apply(idx, []Op{put("a", "2")})
		if ok || res.Revision != 1 || res.Ops != nil {
			t.Fatalf("replay of %d applied: %+v %v", idx, res, ok)
		}
	}
	if s.Hash() != h || s.AppliedIndex() != 5 {
		t.Fatal("replay changed state")
	}
	// A no-op apply still advances the applied index.
	if res, ok := s.Apply(6, []Op{del("zz")}); !ok || res.Revision != 1 || s.AppliedIndex() != 6 {
		t.Fatalf("noop apply: %+v %v idx=%d", res, ok, s.AppliedIndex())
	}
	s.MarkApplied(9)
	s.MarkApplied(7)
	if s.AppliedIndex() != 9 || s.Revision() != 1 {
		t.Fatalf("MarkApplied: idx=%d rev=%d", s.AppliedIndex(), s.Revision())
	}
	if _, ok := s.Apply(9, []Op{put("b", "1")}); ok {
		t.Fatal("index covered by MarkApplied must be ignored")
	}
}

func TestValidateOp(t *testing.T) {
	big := make([]byte, MaxKeySize+1)
	tests := []struct {
		name string
		op   Op
		want error
	}{
		{"put ok", put("a", "1"), nil},
		{"put empty value ok", put("a", ""), nil},
		{"put empty key", put("", "1"), ErrEmptyKey},
		{"delete empty key", del(""), ErrEmptyKey},
		{"delete ok", del("a"), nil},
		{"range ok", delRange("a", "b"), nil},
		{"range end equal", delRange("a", "a"), ErrInvalidRange},
		{"range end before", delRange("b", "a"), ErrInvalidRange},
		{"range end empty", delRange("b", ""), ErrInvalidRange},
		{"range to end", delRange("b", "\x00"), nil},
		{"range empty key", delRange("", "b"), ErrEmptyKey},
		{"unknown type", Op{Type: 42, Key: []byte("a")}, ErrUnknownOp},
		{"zero type", Op{Key: []byte("a")}, ErrUnknownOp},
		{"key too large", Op{Type: OpPut, Key: big}, ErrKeyTooLarge},
		{"key at limit", Op{Type: OpPut, Key: big[:MaxKeySize]}, nil},
		{"end too large", Op{Type: OpDeleteRange, Key: []byte("a"), End: append([]byte("b"), big...)}, ErrKeyTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := ValidateOp(tc.op); !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("ValidateOp = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestMemoryUsage(t *testing.T) {
	a := newApplier()
	a.apply(t, put("ab", "123"), put("c", ""))
	// An entry counts its 13-byte header, key, value and varint revisions
	// rounded up to 16, plus IndexOverhead: "ab"="123" is 13+5+3 -> 32,
	// "c"="" is 13+1+3 -> 32.
	want := int64(32+IndexOverhead) + int64(32+IndexOverhead)
	if got := a.MemoryUsage(); got != want {
		t.Fatalf("MemoryUsage %d, want %d", got, want)
	}
	a.apply(t, put("ab", "1"))
	want -= 0 // 13+3+3 -> 32 still
	if got := a.MemoryUsage(); got != want {
		t.Fatalf("after overwrite %d, want %d", got, want)
	}
	a.apply(t, delRange("a", "\x00"))
	if got := a.MemoryUsage(); got != 0 || a.Len() != 0 {
		t.Fatalf("after delete-all mem=%d len=%d", got, a.Len())
	}
}

// TestRewriteGrowthBounds checks RewriteGrowth against entrySize over every
// tail the engine writes (3 to 35 bytes, old and new) and a span of key and
// value sizes that covers every rounding: replacing an entry with one at
// most grow bytes longer never adds more than RewriteGrowth(grow), which is
// never more than a new key's EntryGrowth.
func TestRewriteGrowthBounds(t *testing.T) {
	for size := range 33 { // the old entry's key and value bytes
		for grow := range 33 {
			bound := RewriteGrowth(grow)
			if eg := EntryGrowth(0, grow); bound > eg {
				t.Fatalf("RewriteGrowth(%d) = %d, over EntryGrowth(0, %d) = %d", grow, bound, grow, eg)
			}
			for oldTail := 3; oldTail <= 35; oldTail++ {
				for newTail := 3; newTail <= 35; newTail++ {
					if d := entrySize(size+grow, 0, newTail) - entrySize(size, 0, oldTail); d > bound {
						t.Fatalf("size %d grow %d tails %d->%d adds %d, over RewriteGrowth %d", size, grow, oldTail, newTail, d, bound)
					}
				}
			}
		}
	}
	if got := RewriteGrowth(-5); got != RewriteGrowth(0) {
		t.Fatalf("RewriteGrowth(-5) = %d, want RewriteGrowth(0) = %d", got, RewriteGrowth(0))
	}
}

// TestAtomicBatches runs a writer that moves value between two keys in
// 2-op batches (sum stays constant) while readers check the invariant via
// Get pairs inside a Range and via Range alone. Run with -race.
func TestAtomicBatches(t *testing.T) {
	s := New()
	enc := func(n int) []byte { return []byte(fmt.Sprintf("%08d", n)) }
	const total = 1000
	s.Apply(1, []Op{{Type: OpPut, Key: []byte("acct/a"), Value: enc(total)}, {Type: OpPut, Key: []byte("acct/b"), Value: enc(0)}})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res := s.Range([]byte("acct/"), PrefixEnd([]byte("acct/")), RangeOptions{})
				if len(res.KVs) != 2 {
					errc <- fmt.Errorf("saw %d keys", len(res.KVs))
					return
				}
				var a, b int
				fmt.Sscanf(string(res.KVs[0].Value), "%d", &a)
				fmt.Sscanf(string(res.KVs[1].Value), "%d", &b)
				if a+b != total || res.KVs[0].ModRevision != res.KVs[1].ModRevision {
					errc <- fmt.Errorf("half-applied batch: a=%d b=%d mods %d/%d", a, b, res.KVs[0].ModRevision, res.KVs[1].ModRevision)
					return
				}
				if res.KVs[0].ModRevision > res.Revision {
					errc <- fmt.Errorf("mod revision %d above result revision %d", res.KVs[0].ModRevision, res.Revision)
					return
				}
			}
		}()
	}
	// A snapshot reader concurrently with writes must also see whole batches.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 50; i++ {
			sn := s.Snapshot()
			var buf bytes.Buffer
			if _, err := sn.WriteTo(&buf); err != nil {
				errc <- err
				return
			}
			r := New()
			if err := r.Restore(&buf); err != nil {
				errc <- err
				return
			}
			kvs := r.Range([]byte("acct/"), PrefixEnd([]byte("acct/")), RangeOptions{}).KVs
			var a, b int
			fmt.Sscanf(string(kvs[0].Value), "%d", &a)
			fmt.Sscanf(string(kvs[1].Value), "%d", &b)
			if a+b != total {
				errc <- fmt.Errorf("snapshot saw half batch a=%d b=%d", a, b)
				return
			}
		}
	}()
	for i := 0; i < 3000; i++ {
		a := (i * 7) % total
		s.Apply(uint64(i+2), []Op{
			{Type: OpPut, Key: []byte("acct/a"), Value: enc(a)},
			{Type: OpPut, Key: []byte("acct/b"), Value: enc(total - a)},
		})
	}
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}
