package fsm

import (
	"errors"
	"testing"

	"github.com/kvdb/kvdb/internal/command"
	"github.com/kvdb/kvdb/internal/engine"
)

func ident(b []byte) []byte { return b }

func TestApplyResults(t *testing.T) {
	store := engine.New()
	f := New(store, nil)
	put := func(k, v string) []byte { return command.EncodePut([]byte(k), []byte(v), true) }
	del, _ := command.EncodeDelete([]byte("a"), []byte("z"), false)
	evicts := 0
	f.evicted = func() { evicts++ }
	evict, _ := command.EncodeEvict([]engine.EvictKey{{Key: []byte("c"), ModRevision: 4}})

	tests := []struct {
		name    string
		data    []byte
		check   func(t *testing.T, r Result)
		wantRev int64
	}{
		{"noop", nil, func(t *testing.T, r Result) {}, 0},
		{"put", put("a", "1"), func(t *testing.T, r Result) {
			if r.Err != nil || r.Res.Revision != 1 {
				t.Fatalf("%+v", r)
			}
		}, 1},
		{"put with prev", put("a", "2"), func(t *testing.T, r Result) {
			if len(r.Res.Ops) != 1 || string(r.Res.Ops[0].Prev[0].Value) != "1" {
				t.Fatalf("%+v", r)
			}
		}, 2},
		{"multi: each command at its own revision, a bad one refused alone", command.EncodeMulti([][]byte{put("b", "1"), command.EncodePut(nil, nil, false), put("c", "1")}, ident),
			func(t *testing.T, r Result) {
				if len(r.Multi) != 3 || r.Multi[0].Res.Revision != 3 || !errors.Is(r.Multi[1].Err, command.ErrInvalid) || r.Multi[2].Res.Revision != 4 {
					t.Fatalf("%+v", r)
				}
			}, 4},
		{"undecodable entry is skipped", []byte{0xff}, func(t *testing.T, r Result) {
			if !errors.Is(r.Err, command.ErrInvalid) {
				t.Fatalf("%+v", r)
			}
		}, 4},
		{"evict", evict, func(t *testing.T, r Result) {
			if _, ok := store.Get([]byte("c")); ok || evicts != 1 {
				t.Fatalf("c still there or hook not called (%d)", evicts)
			}
		}, 5},
		{"delete range", del, func(t *testing.T, r Result) {
			if r.Res.Ops[0].Deleted != 2 {
				t.Fatalf("%+v", r)
			}
		}, 6},
	}
	for i, tt := range tests {
		r := f.Apply(uint64(i+1), tt.data).(Result)
		tt.check(t, r)
		if store.AppliedIndex() != uint64(i+1) || store.Revision() != tt.wantRev {
			t.Fatalf("%s: applied %d revision %d, want %d %d", tt.name, store.AppliedIndex(), store.Revision(), i+1, tt.wantRev)
		}
		if msg := store.CheckConsistency(); msg != "" {
			t.Fatalf("%s: %s", tt.name, msg)
		}
	}
}
