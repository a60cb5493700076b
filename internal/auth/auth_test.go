package auth

import (
	"errors"
	"testing"
	"time"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
)

func cmd(op raftv1.AuthOp, user, role string) *raftv1.AuthCommand {
	return &raftv1.AuthCommand{Op: op, User: user, Role: role}
}

func grant(role string, t Perm, key, end string) *raftv1.AuthCommand {
	return &raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_ROLE_GRANT_PERMISSION, Role: role,
		Permission: &raftv1.AuthPermission{Type: uint32(t), Key: []byte(key), RangeEnd: []byte(end)}}
}

func mustApply(t *testing.T, s *Store, cs ...*raftv1.AuthCommand) {
	t.Helper()
	for _, c := range cs {
		if err := s.Apply(c); err != nil {
			t.Fatalf("%v: %v", c, err)
		}
	}
}

func init() { SetBcryptCostForTests() }

func TestApplyRules(t *testing.T) {
	s := NewStore()
	secret := make([]byte, 32)
	enable := &raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_ENABLE, TokenSecret: secret}
	if err := s.Apply(enable); !errors.Is(err, ErrRootRequired) {
		t.Fatalf("enable without root: %v", err)
	}
	hash, _ := HashPassword("pw")
	mustApply(t, s, &raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_USER_ADD, User: Root, PasswordHash: hash}, enable)
	tests := []struct {
		name string
		c    *raftv1.AuthCommand
		want error
	}{
		{"delete root while enabled", cmd(raftv1.AuthOp_AUTH_OP_USER_DELETE, Root, ""), ErrRootRequired},
		{"revoke root's role", cmd(raftv1.AuthOp_AUTH_OP_USER_REVOKE_ROLE, Root, Root), ErrRootRequired},
		{"delete root role", cmd(raftv1.AuthOp_AUTH_OP_ROLE_DELETE, "", Root), ErrRootRequired},
		{"add user twice", cmd(raftv1.AuthOp_AUTH_OP_USER_ADD, Root, ""), ErrUserExists},
		{"bad name", cmd(raftv1.AuthOp_AUTH_OP_USER_ADD, "a b", ""), ErrInvalid},
		{"grant unknown role", cmd(raftv1.AuthOp_AUTH_OP_USER_GRANT_ROLE, Root, "nope"), ErrRoleNotFound},
		{"grant to unknown user", cmd(raftv1.AuthOp_AUTH_OP_USER_GRANT_ROLE, "nobody", Root), ErrUserNotFound},
		{"permission on unknown role", grant("nope", Read, "a", ""), ErrRoleNotFound},
		{"unknown op", cmd(raftv1.AuthOp_AUTH_OP_UNSPECIFIED, "", ""), ErrInvalid},
	}
	rev := s.Revision()
	for _, tt := range tests {
		if err := s.Apply(tt.c); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if s.Revision() != rev {
		t.Fatalf("refused changes moved the revision %d -> %d", rev, s.Revision())
	}
	mustApply(t, s, cmd(raftv1.AuthOp_AUTH_OP_ROLE_ADD, "", "r"))
	if err := s.Apply(grant("r", Perm(7), "a", "")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("permission type 7: %v", err)
	}
}

func TestPermissions(t *testing.T) {
	s := NewStore()
	mustApply(t, s,
		cmd(raftv1.AuthOp_AUTH_OP_USER_ADD, "alice", ""), cmd(raftv1.AuthOp_AUTH_OP_USER_ADD, "bob", ""),
		cmd(raftv1.AuthOp_AUTH_OP_ROLE_ADD, "", "app"),
		grant("app", ReadWrite, "app/", "app0"), grant("app", Read, "config", ""), grant("app", Write, "logs/", "\x00"),
		cmd(raftv1.AuthOp_AUTH_OP_USER_GRANT_ROLE, "alice", "app"),
	)
	tests := []struct {
		user     string
		perm     Perm
		key, end string
		want     bool
	}{
		{"alice", Read, "app/x", "", true},
		{"alice", Write, "app/x", "", true},
		{"alice", Read, "app/a", "app/z", true},
		{"alice", Read, "app/", "app0", true},
		{"alice", Read, "app/", "app1", false},
		{"alice", Read, "ap", "app/z", false},
		{"alice", Read, "config", "", true},
		{"alice", Write, "config", "", false},
		{"alice", Read, "config", "config\x00", true},
		{"alice", Write, "logs/1", "", true},
		{"alice", Write, "zzz", "\x00", true},
		{"alice", Write, "a", "\x00", false},
		{"alice", Write, "logs/", "\x00", true},
		{"alice", Read, "logs/1", "", false},
		{"bob", Read, "app/x", "", false},
		{"nobody", Read, "app/x", "", false},
	}
	for _, tt := range tests {
		if got := s.Allowed(tt.user, tt.perm, []byte(tt.key), []byte(tt.end)); got != tt.want {
			t.Errorf("%s %v [%q, %q) = %v, want %v", tt.user, tt.perm, tt.key, tt.end, got, tt.want)
		}
	}
	// Revoking the role takes effect at once.
	mustApply(t, s, cmd(raftv1.AuthOp_AUTH_OP_USER_REVOKE_ROLE, "alice", "app"))
	if s.Allowed("alice", Read, []byte("app/x"), nil) {
		t.Fatal("a revoked role still allows")
	}
}

func TestTokens(t *testing.T) {
	s := NewStore()
	hash, _ := HashPassword("secret")
	mustApply(t, s, &raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_USER_ADD, User: Root, PasswordHash: hash},
		&raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_ENABLE, TokenSecret: []byte("0123456789abcdef0123")})
	if _, err := s.CheckPassword(Root, "wrong"); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := s.CheckPassword("ghost", "secret"); !errors.Is(err, ErrAuthFailed) || err.Error() != ErrAuthFailed.Error() {
		t.Fatalf("unknown user: %v (must read like a wrong password)", err)
	}
	rev, err := s.CheckPassword(Root, "secret")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_000_000, 0)
	tok, _ := s.IssueToken(Root, rev, now, time.Minute)
	if u, err := s.VerifyToken(tok, now.Add(time.Second)); err != nil || u != Root {
		t.Fatalf("fresh token: %q %v", u, err)
	}
	for name, bad := range map[string]string{
		"expired":  tok,
		"tampered": tok[:len(tok)-2] + "AA",
		"garbage":  "x.y",
		"empty":    "",
	} {
		at := now
		if name == "expired" {
			at = now.Add(time.Minute)
		}
		if _, err := s.VerifyToken(bad, at); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s token: %v", name, err)
		}
	}
	// Another node with the same replicated state accepts it.
	other := NewStore()
	if err := other.Unmarshal(mustMarshal(t, s)); err != nil {
		t.Fatal(err)
	}
	if u, err := other.VerifyToken(tok, now); err != nil || u != Root {
		t.Fatalf("token on another node: %q %v", u, err)
	}
	// A password change invalidates it.
	hash2, _ := HashPassword("new")
	mustApply(t, s, &raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_USER_PASSWORD, User: Root, PasswordHash: hash2})
	if _, err := s.VerifyToken(tok, now); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("token after a password change: %v", err)
	}
}

func mustMarshal(t *testing.T, s *Store) []byte {
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLimiter(t *testing.T) {
	l := NewLimiter()
	now := time.Unix(0, 0)
	for i := 0; i < limiterFree; i++ {
		if err := l.Check("u", "1.2.3.4", now); err != nil {
			t.Fatalf("attempt %d refused: %v", i, err)
		}
		l.Failed("u", "1.2.3.4", now)
	}
	l.Failed("u", "1.2.3.4", now)
	if err := l.Check("u", "5.6.7.8", now); !errors.Is(err, ErrTooManyFailures) {
		t.Fatalf("user after %d failures: %v", limiterFree+1, err)
	}
	if err := l.Check("v", "1.2.3.4", now); !errors.Is(err, ErrTooManyFailures) {
		t.Fatalf("address after %d failures: %v", limiterFree+1, err)
	}
	if err := l.Check("u", "5.6.7.8", now.Add(limiterBase)); err != nil {
		t.Fatalf("after the wait: %v", err)
	}
	for i := range limiterEntries + 10 {
		l.Failed(string(rune(i)), "x", now)
	}
	if len(l.keys) > limiterEntries+1 {
		t.Fatalf("limiter holds %d keys", len(l.keys))
	}
}

// TestRecreatedUserRefusesOldCredentials: a token or session of a user
// does not work for a later user of the same name, whether the first one
// ever changed its password or not, on this store and on one restored from
// its snapshot; a user from an older snapshot (password revision 0) keeps
// its credentials until it is removed.
func TestRecreatedUserRefusesOldCredentials(t *testing.T) {
	hash, _ := HashPassword("pw")
	add := &raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_USER_ADD, User: "erin", PasswordHash: hash}
	passwd := &raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_USER_PASSWORD, User: "erin", PasswordHash: hash}
	del := cmd(raftv1.AuthOp_AUTH_OP_USER_DELETE, "erin", "")
	now := time.Unix(1_000_000, 0)
	tests := []struct {
		name   string
		before []*raftv1.AuthCommand // after root and enable, before the credential is issued
		oldRev bool                  // erin comes from a snapshot without a creation revision
	}{
		{name: "never changed password", before: []*raftv1.AuthCommand{add}},
		{name: "changed password", before: []*raftv1.AuthCommand{add, passwd}},
		{name: "from an older snapshot", before: []*raftv1.AuthCommand{add}, oldRev: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore()
			rootHash, _ := HashPassword("rootpw")
			mustApply(t, s, &raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_USER_ADD, User: Root, PasswordHash: rootHash},
				&raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_ENABLE, TokenSecret: []byte("0123456789abcdef0123")})
			mustApply(t, s, tt.before...)
			if tt.oldRev {
				st := s.State()
				for _, u := range st.GetUsers() {
					u.PasswordRevision = 0
				}
				if err := s.Restore(st); err != nil {
					t.Fatal(err)
				}
			}
			rev, err := s.CheckPassword("erin", "pw")
			if err != nil {
				t.Fatal(err)
			}
			tok, _ := s.IssueToken("erin", rev, now, time.Hour)
			valid := func(s *Store) (token, session bool) {
				_, err := s.VerifyToken(tok, now)
				r, ok := s.PasswordRevision("erin")
				return err == nil, ok && r == rev
			}
			if tok, sess := valid(s); !tok || !sess {
				t.Fatalf("before the delete: token %v, session %v", tok, sess)
			}
			mustApply(t, s, del)
			if tok, sess := valid(s); tok || sess {
				t.Fatalf("deleted: token %v, session %v", tok, sess)
			}
			mustApply(t, s, add)
			other := NewStore()
			if err := other.Unmarshal(mustMarshal(t, s)); err != nil {
				t.Fatal(err)
			}
			for name, st := range map[string]*Store{"this store": s, "restored": other} {
				if tok, sess := valid(st); tok || sess {
					t.Errorf("%s, created again: old token accepted %v, old session accepted %v", name, tok, sess)
				}
				if valid, _ := st.Check("erin", rev, true, Read, []byte("k"), nil); valid {
					t.Errorf("%s, created again: Check accepts the old session", name)
				}
			}
			// Both compute the new user's revision alike.
			r1, _ := s.PasswordRevision("erin")
			r2, _ := other.PasswordRevision("erin")
			if r1 != r2 || r1 == 0 || r1 == rev {
				t.Fatalf("new user's password revision: %d here, %d restored, old %d", r1, r2, rev)
			}
		})
	}
}
