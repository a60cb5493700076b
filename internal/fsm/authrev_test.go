package fsm

import (
	"errors"
	"fmt"
	"testing"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	"github.com/kvdb/kvdb/internal/auth"
	"github.com/kvdb/kvdb/internal/command"
	"github.com/kvdb/kvdb/internal/engine"
)

// TestStaleAuthRevisionIsRefused: while authentication is on, a command
// stamped with an auth revision older than the auth state it meets is
// refused and changes nothing (alone, or as one command of a multi);
// the current revision, no stamp, and the leader's own expiries pass; with
// authentication off nothing is refused.
func TestStaleAuthRevisionIsRefused(t *testing.T) {
	users := auth.NewStore()
	store := engine.New()
	f := New(store, users, nil)
	index := uint64(0)
	apply := func(data []byte) Result {
		index++
		return f.Apply(index, data).(Result)
	}
	authCmd := func(c *raftv1.AuthCommand) {
		t.Helper()
		data, err := command.EncodeAuth(c)
		if err != nil {
			t.Fatal(err)
		}
		if r := apply(command.StampAuthRevision(data, users.Revision())); r.Err != nil {
			t.Fatalf("%v: %v", c, r.Err)
		}
	}
	put := func(k string) []byte { return command.EncodePut([]byte(k), []byte("v"), false) }

	// Off: a stale stamp is not looked at.
	authCmd(&raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_ROLE_ADD, Role: "app"})
	if r := apply(command.StampAuthRevision(put("off"), 1)); r.Err != nil || users.Revision() != 1 {
		t.Fatalf("auth off, stale stamp: %v", r.Err)
	}
	hash, _ := auth.HashPassword("pw")
	authCmd(&raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_USER_ADD, User: auth.Root, PasswordHash: hash})
	authCmd(&raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_ENABLE, TokenSecret: []byte("0123456789abcdef0123")})
	cur := users.Revision()
	old := cur - 1

	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"current revision", command.StampAuthRevision(put("cur"), cur), nil},
		{"no revision", put("none"), nil},
		{"stale put", command.StampAuthRevision(put("stale"), old), auth.ErrOldRevision},
		{"stale auth change", func() []byte {
			d, _ := command.EncodeAuth(&raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_ROLE_ADD, Role: "late"})
			return command.StampAuthRevision(d, old)
		}(), auth.ErrOldRevision},
	} {
		rev := store.Revision()
		r := apply(tc.data)
		if !errors.Is(r.Err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, r.Err, tc.want)
		}
		if tc.want != nil && (store.Revision() != rev || users.Revision() != cur) {
			t.Errorf("%s: refused, yet the revision moved (store %d -> %d, auth %d)", tc.name, rev, store.Revision(), users.Revision())
		}
	}
	if _, ok := store.Get([]byte("stale")); ok {
		t.Error("the stale put was applied")
	}

	// A multi refuses only its stale commands.
	r := apply(command.EncodeMulti([][]byte{
		command.StampAuthRevision(put("m1"), cur), command.StampAuthRevision(put("m2"), old), put("m3"),
	}, func(b []byte) []byte { return b }))
	var errs []string
	for _, m := range r.Multi {
		errs = append(errs, fmt.Sprint(m.Err))
	}
	if len(r.Multi) != 3 || r.Multi[0].Err != nil || !errors.Is(r.Multi[1].Err, auth.ErrOldRevision) || r.Multi[2].Err != nil {
		t.Fatalf("multi: %v", errs)
	}
	for k, want := range map[string]bool{"m1": true, "m2": false, "m3": true} {
		if _, ok := store.Get([]byte(k)); ok != want {
			t.Errorf("after the multi, %s present = %v, want %v", k, ok, want)
		}
	}

	// The leader's own expiries carry no revision and are never refused.
	expire, err := command.EncodeExpire([]engine.EvictKey{{Key: []byte("cur"), ModRevision: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if r := apply(expire); r.Err != nil {
		t.Fatalf("expiry refused: %v", r.Err)
	}
}
