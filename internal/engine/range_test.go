package engine

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestPrefixEnd(t *testing.T) {
	tests := []struct{ in, want []byte }{
		{[]byte("a"), []byte("b")},
		{[]byte("abc"), []byte("abd")},
		{[]byte("a\xff"), []byte("b")},
		{[]byte("a\xff\xff"), []byte("b")},
		{[]byte{0x01, 0xfe, 0xff}, []byte{0x01, 0xff}},
		{[]byte{0xff}, []byte{0}},
		{[]byte{0xff, 0xff}, []byte{0}},
		{[]byte{}, []byte{0}},
		{nil, []byte{0}},
		{[]byte{0}, []byte{1}},
	}
	for _, tc := range tests {
		in := append([]byte(nil), tc.in...)
		if got := PrefixEnd(in); !bytes.Equal(got, tc.want) {
			t.Errorf("PrefixEnd(%x) = %x, want %x", tc.in, got, tc.want)
		}
		if !bytes.Equal(in, tc.in) {
			t.Errorf("PrefixEnd modified its input %x", tc.in)
		}
	}
}

func TestRange(t *testing.T) {
	a := newApplier()
	for _, k := range []string{"a", "b", "ba", "bb", "c", "d", "\xff", "\xff\xff"} {
		a.apply(t, put(k, "v"+k))
	}
	rev := a.Revision()
	keys := func(r RangeResult) string {
		var b bytes.Buffer
		for i, kv := range r.KVs {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%q", kv.Key)
			if kv.Value != nil {
				fmt.Fprintf(&b, "=%q", kv.Value)
			}
		}
		return b.String()
	}
	tests := []struct {
		name       string
		start, end string
		opts       RangeOptions
		want       string
		count      int64
		more       bool
	}{
		{"single key", "b", "", RangeOptions{}, `"b"="vb"`, 1, false},
		{"single missing", "bz", "", RangeOptions{}, "", 0, false},
		{"half open", "a", "c", RangeOptions{}, `"a"="va","b"="vb","ba"="vba","bb"="vbb"`, 4, false},
		{"start between keys", "az", "bb", RangeOptions{}, `"b"="vb","ba"="vba"`, 2, false},
		{"prefix", "b", string(PrefixEnd([]byte("b"))), RangeOptions{}, `"b"="vb","ba"="vba","bb"="vbb"`, 3, false},
		{"prefix ff", "\xff", string(PrefixEnd([]byte("\xff"))), RangeOptions{KeysOnly: true}, `"\xff","\xff\xff"`, 2, false},
		{"to end", "c", "\x00", RangeOptions{KeysOnly: true}, `"c","d","\xff","\xff\xff"`, 4, false},
		{"all", "\x00", "\x00", RangeOptions{CountOnly: true}, "", 8, false},
		{"all from empty", "", "\x00", RangeOptions{CountOnly: true}, "", 8, false},
		{"limit", "a", "\x00", RangeOptions{Limit: 2}, `"a"="va","b"="vb"`, 8, true},
		{"limit exact", "a", "c", RangeOptions{Limit: 4}, `"a"="va","b"="vb","ba"="vba","bb"="vbb"`, 4, false},
		{"limit above", "a", "c", RangeOptions{Limit: 10, KeysOnly: true}, `"a","b","ba","bb"`, 4, false},
		{"keys only limit", "b", "d", RangeOptions{Limit: 1, KeysOnly: true}, `"b"`, 4, true},
		{"count only", "b", "d", RangeOptions{CountOnly: true}, "", 4, false},
		{"count only ignores limit (etcd)", "b", "d", RangeOptions{CountOnly: true, Limit: 1}, "", 4, false},
		{"count only single", "c", "", RangeOptions{CountOnly: true}, "", 1, false},
		{"empty interval", "c", "c", RangeOptions{}, "", 0, false},
		{"inverted", "d", "a", RangeOptions{}, "", 0, false},
		{"beyond last", "\xff\xff\x00", "\x00", RangeOptions{}, "", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var end []byte
			if tc.end != "" {
				end = []byte(tc.end)
			}
			r := a.Range([]byte(tc.start), end, tc.opts)
			if got := keys(r); got != tc.want {
				t.Errorf("kvs = %s, want %s", got, tc.want)
			}
			if r.Count != tc.count || r.More != tc.more || r.Revision != rev {
				t.Errorf("count=%d more=%v rev=%d, want %d %v %d", r.Count, r.More, r.Revision, tc.count, tc.more, rev)
			}
		})
	}
}

// TestRangeModel compares Range (including rank-based Count) against a
// sorted-slice model on a tree deep enough to have internal nodes.
func TestRangeModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	a := newApplier()
	model := map[string]string{}
	for i := 0; i < 3000; i++ {
		k := fmt.Sprintf("%03x", rng.IntN(4096))
		if rng.IntN(4) == 0 {
			a.apply(t, del(k))
			delete(model, k)
		} else {
			a.apply(t, put(k, "v"+k))
			model[k] = "v" + k
		}
	}
	sorted := slices.Sorted(maps.Keys(model))
	for i := 0; i < 2000; i++ {
		start := fmt.Sprintf("%03x", rng.IntN(4200))
		var end string
		switch rng.IntN(3) {
		case 0:
			end = "\x00"
		case 1:
			end = fmt.Sprintf("%03x", rng.IntN(4200))
		default:
			end = string(PrefixEnd([]byte(start[:rng.IntN(3)+1])))
		}
		limit := rng.IntN(50)
		var want []string
		for _, k := range sorted {
			if k >= start && (end == "\x00" || k < end) {
				want = append(want, k)
			}
		}
		for _, countOnly := range []bool{false, true} {
			r := a.Range([]byte(start), []byte(end), RangeOptions{Limit: limit, CountOnly: countOnly})
			if r.Count != int64(len(want)) {
				t.Fatalf("[%q,%q) limit %d countOnly %v: count %d, want %d", start, end, limit, countOnly, r.Count, len(want))
			}
			if countOnly {
				continue
			}
			n := len(want)
			if limit > 0 && n > limit {
				n = limit
			}
			if len(r.KVs) != n || r.More != (n < len(want)) {
				t.Fatalf("[%q,%q) limit %d: %d kvs more=%v, want %d of %d", start, end, limit, len(r.KVs), r.More, n, len(want))
			}
			for j, kv := range r.KVs {
				if string(kv.Key) != want[j] || string(kv.Value) != model[want[j]] {
					t.Fatalf("kv %d = %q, want %q", j, kv.Key, want[j])
				}
			}
		}
	}
}
