package engine

import "testing"

func TestApplyEachWithSeesEarlierGroups(t *testing.T) {
	s := New()
	res, ok := s.ApplyEachWith(1, 3, func(g int, get func([]byte) (KeyValue, bool)) []Op {
		kv, found := get([]byte("n"))
		v := "1"
		if found {
			v = string(kv.Value) + "1"
		}
		if g == 1 {
			return nil // a group that changes nothing keeps the revision
		}
		return []Op{{Type: OpPut, Key: []byte("n"), Value: []byte(v)}}
	})
	if !ok || len(res) != 3 || res[0].Revision != 1 || res[1].Revision != 1 || res[2].Revision != 2 {
		t.Fatalf("results %+v", res)
	}
	if kv, _ := s.Get([]byte("n")); string(kv.Value) != "11" {
		t.Fatalf("n = %q", kv.Value)
	}
	if _, ok := s.ApplyEachWith(1, 1, nil); ok {
		t.Fatal("a replayed index was applied")
	}
}
