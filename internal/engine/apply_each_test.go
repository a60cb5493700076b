package engine

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// TestApplyEachMatchesSeparateApplies: applying groups in one entry leaves
// the same store (same hash, same revisions) and the same per-group results
// as applying each group as its own entry.
func TestApplyEachMatchesSeparateApplies(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	one, each := New(), New()
	index := uint64(0)
	for round := 0; round < 200; round++ {
		groups := make([][]Op, 1+r.IntN(6))
		for g := range groups {
			for range 1 + r.IntN(3) {
				key := []byte(fmt.Sprintf("k%02d", r.IntN(20)))
				var op Op
				switch r.IntN(4) {
				case 0:
					op = Op{Type: OpDelete, Key: key, PrevKV: true}
				case 1:
					op = Op{Type: OpDeleteRange, Key: key, End: []byte("k15"), PrevKV: r.IntN(2) == 0}
				default:
					op = Op{Type: OpPut, Key: key, Value: []byte(fmt.Sprint(round)), PrevKV: r.IntN(2) == 0}
				}
				groups[g] = append(groups[g], op)
			}
		}
		var want []Result
		for _, ops := range groups {
			index++
			res, ok := one.Apply(index, ops)
			if !ok {
				t.Fatal("Apply ignored")
			}
			want = append(want, res)
		}
		got, ok := each.ApplyEach(index, groups)
		if !ok {
			t.Fatal("ApplyEach ignored")
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: results differ\n got %+v\nwant %+v", round, got, want)
		}
		if one.Hash() != each.Hash() || one.Revision() != each.Revision() {
			t.Fatalf("round %d: stores differ", round)
		}
		if msg := each.checkConsistency(); msg != "" {
			t.Fatal(msg)
		}
	}
	if _, ok := each.ApplyEach(index, [][]Op{{{Type: OpPut, Key: []byte("x")}}}); ok {
		t.Fatal("replayed index applied")
	}
}
