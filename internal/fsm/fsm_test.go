package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"

	"github.com/kvdb/kvdb/internal/auth"
	"github.com/kvdb/kvdb/internal/command"
	"github.com/kvdb/kvdb/internal/engine"
)

func ident(b []byte) []byte { return b }

func TestApplyResults(t *testing.T) {
	store := engine.New()
	f := New(store, nil, nil)
	put := func(k, v string) []byte { return command.EncodePut([]byte(k), []byte(v), true) }
	del, _ := command.EncodeDelete([]byte("a"), []byte("z"), false, 0)
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

// TestSnapshotCarriesAuth: a snapshot restores the auth state with the
// store, and a snapshot of the engine alone (the format before the auth
// section) still restores, with empty auth state.
func TestSnapshotCarriesAuth(t *testing.T) {
	users := auth.NewStore()
	f := New(engine.New(), users, nil)
	add, _ := command.EncodeAuth(&raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_ROLE_ADD, Role: "reader"})
	if r := f.Apply(1, add).(Result); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := f.Apply(2, add).(Result); !errors.Is(r.Err, auth.ErrRoleExists) {
		t.Fatalf("adding a role twice: %v", r.Err)
	}
	f.Apply(3, command.EncodePut([]byte("k"), []byte("v"), false))
	var buf bytes.Buffer
	if _, err := f.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	other := auth.NewStore()
	g := New(engine.New(), other, nil)
	if err := g.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(other.Roles()) != "[reader]" || g.AppliedIndex() != 3 || g.store.Hash() != f.store.Hash() {
		t.Fatalf("restored roles %v, applied %d", other.Roles(), g.AppliedIndex())
	}
	var plain bytes.Buffer
	if _, err := f.store.Snapshot().WriteTo(&plain); err != nil {
		t.Fatal(err)
	}
	h := New(engine.New(), nil, nil)
	if err := h.Restore(&plain); err != nil || h.AppliedIndex() != 3 || len(h.auth.Roles()) != 0 {
		t.Fatalf("engine-only snapshot: %v, applied %d, roles %v", err, h.AppliedIndex(), h.auth.Roles())
	}
	for _, bad := range [][]byte{[]byte("KVDBAUTH\xff\xff\xff\xff"), []byte("KVDBAUTH\x00\x00\x00\x05ab"), []byte("KV")} {
		if err := New(engine.New(), nil, nil).Restore(bytes.NewReader(bad)); !errors.Is(err, engine.ErrCorruptSnapshot) {
			t.Errorf("restore %q: %v", bad, err)
		}
	}
}
