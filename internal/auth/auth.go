// Package auth is KVDB's users, roles and permissions, in etcd's model, and
// the tokens that carry an identity from Authenticate to later requests.
//
// The state (users with bcrypt password hashes and roles, roles with key
// permissions, whether auth is on, the token-signing secret) changes only
// through raft: the state machine applies each AuthCommand to the Store in
// log order, and snapshots carry the whole State, so every node enforces
// the same rules and a change takes effect on the next request everywhere.
//
// Tokens are signed with HMAC-SHA256 under the replicated secret, so any
// node verifies a token another issued; one names its user, the user's
// password revision and an expiry. The password revision is the auth
// revision at which the user was created or its password last changed, so
// a password change, or deleting the user and creating one of the same
// name, invalidates older tokens and sessions. Permissions are looked up
// at each request, so a revoked role stops working at once.
//
// The user named "root" holds the role "root", which allows every key and
// the administrative calls; auth cannot be enabled without that user.
package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
)

// Root is the name of the superuser and of its role.
const Root = "root"

// Perm is what a permission allows.
type Perm uint8

// The permission types.
const (
	Read      Perm = 1
	Write     Perm = 2
	ReadWrite Perm = Read | Write
)

func (p Perm) String() string {
	switch p {
	case Read:
		return "read"
	case Write:
		return "write"
	case ReadWrite:
		return "readwrite"
	}
	return fmt.Sprintf("Perm(%d)", uint8(p))
}

// Errors of the auth state. The texts are what clients read.
var (
	// ErrAuthFailed is a wrong name or password: it never says which.
	ErrAuthFailed = errors.New("authentication failed: invalid user name or password")
	// ErrInvalidToken is a token that is malformed, forged, expired or
	// issued before its user's password changed or to an earlier user of
	// the same name.
	ErrInvalidToken = errors.New("invalid or expired auth token: authenticate again")
	// ErrUserExists, ErrUserNotFound, ErrRoleExists, ErrRoleNotFound and
	// ErrPermNotFound name the state a change conflicted with.
	ErrUserExists   = errors.New("user already exists")
	ErrUserNotFound = errors.New("user not found")
	ErrRoleExists   = errors.New("role already exists")
	ErrRoleNotFound = errors.New("role not found")
	ErrPermNotFound = errors.New("permission not found")
	// ErrRootRequired refuses to enable auth without a root user, and to
	// remove root or its role while auth is on.
	ErrRootRequired = errors.New("a root user with the root role is required while authentication is enabled")
	// ErrInvalid is a malformed change.
	ErrInvalid = errors.New("invalid auth change")
	// ErrOldRevision refuses, when it is applied, a command whose caller's
	// permissions were checked against an older auth state than the one
	// it meets: it changed nothing, and may be sent again.
	ErrOldRevision = errors.New("the users, roles or permissions changed while the request was in flight; it was not applied: retry it")
)

// Limits on names and passwords.
const (
	MaxNameLen     = 128
	MaxPasswordLen = 72 // bcrypt's own limit
	maxPermissions = 1024
)

type user struct {
	hash  []byte
	roles []string // sorted
	// pwRev is the auth revision of the user's creation or last password
	// change, unique over the store's history (0 only for a user from a
	// snapshot of a version that left it unset until a password change).
	pwRev  uint64
	hasPwd bool
}

// Permission allows reading, writing or both on [Key, End) (End empty:
// Key alone; "\x00": every key from Key on).
type Permission struct {
	Type     Perm
	Key, End []byte
}

func (p Permission) covers(key, end []byte) bool {
	if len(end) == 0 {
		return p.has(key)
	}
	// A range is covered when the permission's range contains it.
	if bytes.Compare(key, p.Key) < 0 {
		return false
	}
	if len(p.End) == 0 {
		return bytes.Equal(key, p.Key) && len(end) == len(key)+1 && bytes.HasPrefix(end, key) && end[len(end)-1] == 0
	}
	if isAll(p.End) {
		return true
	}
	if isAll(end) {
		return false
	}
	return bytes.Compare(end, p.End) <= 0
}

func (p Permission) has(key []byte) bool {
	if len(p.End) == 0 {
		return bytes.Equal(key, p.Key)
	}
	return bytes.Compare(key, p.Key) >= 0 && (isAll(p.End) || bytes.Compare(key, p.End) < 0)
}

func isAll(end []byte) bool { return len(end) == 1 && end[0] == 0 }

// Store is the replicated auth state of one node. Apply and Restore are
// called by the state machine only; the other methods are safe for
// concurrent use from any goroutine.
type Store struct {
	// on and revA mirror enabled and rev for the checks every request
	// makes, without the lock.
	on      atomic.Bool
	revA    atomic.Uint64
	mu      sync.RWMutex
	enabled bool
	secret  []byte
	users   map[string]*user
	roles   map[string][]Permission
	rev     uint64
}

// NewStore returns an empty, disabled store.
func NewStore() *Store {
	return &Store{users: map[string]*user{}, roles: map[string][]Permission{}}
}

// Enabled reports whether authentication is on.
func (s *Store) Enabled() bool { return s.on.Load() }

// Revision counts the auth changes applied.
func (s *Store) Revision() uint64 { return s.revA.Load() }

// Apply applies one replicated change. An error means the change was
// refused and nothing changed, identically on every replica.
func (s *Store) Apply(c *raftv1.AuthCommand) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.applyLocked(c); err != nil {
		return err
	}
	s.on.Store(s.enabled)
	s.rev++
	s.revA.Store(s.rev)
	switch c.GetOp() {
	case raftv1.AuthOp_AUTH_OP_USER_ADD, raftv1.AuthOp_AUTH_OP_USER_PASSWORD:
		// The revision of this change: no earlier user of the same name
		// had it, so its tokens and sessions do not match the new one.
		s.users[c.GetUser()].pwRev = s.rev
	}
	return nil
}

func (s *Store) applyLocked(c *raftv1.AuthCommand) error {
	name, role := c.GetUser(), c.GetRole()
	switch c.GetOp() {
	case raftv1.AuthOp_AUTH_OP_ENABLE:
		if _, ok := s.users[Root]; !ok {
			return ErrRootRequired
		}
		if s.enabled {
			return nil // already on: the tokens issued stay valid
		}
		if len(c.GetTokenSecret()) < 16 {
			return fmt.Errorf("%w: token secret too short", ErrInvalid)
		}
		if _, ok := s.roles[Root]; !ok {
			s.roles[Root] = nil
		}
		u := s.users[Root]
		if !slices.Contains(u.roles, Root) {
			u.roles = insertSorted(u.roles, Root)
		}
		s.enabled, s.secret = true, bytes.Clone(c.GetTokenSecret())
	case raftv1.AuthOp_AUTH_OP_DISABLE:
		s.enabled = false
	case raftv1.AuthOp_AUTH_OP_USER_ADD:
		if err := validName(name); err != nil {
			return err
		}
		if _, ok := s.users[name]; ok {
			return fmt.Errorf("%w: %q", ErrUserExists, name)
		}
		u := &user{hash: bytes.Clone(c.GetPasswordHash()), hasPwd: len(c.GetPasswordHash()) > 0}
		if name == Root {
			u.roles = []string{Root}
			if _, ok := s.roles[Root]; !ok {
				s.roles[Root] = nil
			}
		}
		s.users[name] = u
	case raftv1.AuthOp_AUTH_OP_USER_DELETE:
		if _, ok := s.users[name]; !ok {
			return fmt.Errorf("%w: %q", ErrUserNotFound, name)
		}
		if name == Root && s.enabled {
			return ErrRootRequired
		}
		delete(s.users, name)
	case raftv1.AuthOp_AUTH_OP_USER_PASSWORD:
		u, ok := s.users[name]
		if !ok {
			return fmt.Errorf("%w: %q", ErrUserNotFound, name)
		}
		u.hash, u.hasPwd = bytes.Clone(c.GetPasswordHash()), len(c.GetPasswordHash()) > 0
	case raftv1.AuthOp_AUTH_OP_USER_GRANT_ROLE:
		u, ok := s.users[name]
		if !ok {
			return fmt.Errorf("%w: %q", ErrUserNotFound, name)
		}
		if _, ok := s.roles[role]; !ok {
			return fmt.Errorf("%w: %q", ErrRoleNotFound, role)
		}
		if !slices.Contains(u.roles, role) {
			u.roles = insertSorted(u.roles, role)
		}
	case raftv1.AuthOp_AUTH_OP_USER_REVOKE_ROLE:
		u, ok := s.users[name]
		if !ok {
			return fmt.Errorf("%w: %q", ErrUserNotFound, name)
		}
		i := slices.Index(u.roles, role)
		if i < 0 {
			return fmt.Errorf("%w: user %q does not have role %q", ErrRoleNotFound, name, role)
		}
		if name == Root && role == Root && s.enabled {
			return ErrRootRequired
		}
		u.roles = slices.Delete(u.roles, i, i+1)
	case raftv1.AuthOp_AUTH_OP_ROLE_ADD:
		if err := validName(role); err != nil {
			return err
		}
		if _, ok := s.roles[role]; ok {
			return fmt.Errorf("%w: %q", ErrRoleExists, role)
		}
		s.roles[role] = nil
	case raftv1.AuthOp_AUTH_OP_ROLE_DELETE:
		if _, ok := s.roles[role]; !ok {
			return fmt.Errorf("%w: %q", ErrRoleNotFound, role)
		}
		if role == Root && s.enabled {
			return ErrRootRequired
		}
		delete(s.roles, role)
		for _, u := range s.users {
			if i := slices.Index(u.roles, role); i >= 0 {
				u.roles = slices.Delete(u.roles, i, i+1)
			}
		}
	case raftv1.AuthOp_AUTH_OP_ROLE_GRANT_PERMISSION:
		perms, ok := s.roles[role]
		if !ok {
			return fmt.Errorf("%w: %q", ErrRoleNotFound, role)
		}
		p, err := permissionOf(c.GetPermission())
		if err != nil {
			return err
		}
		if i := findPerm(perms, p.Key, p.End); i >= 0 {
			perms[i].Type = p.Type // etcd: granting again replaces the type
		} else {
			if len(perms) >= maxPermissions {
				return fmt.Errorf("%w: role %q has %d permissions, the most a role may hold", ErrInvalid, role, maxPermissions)
			}
			s.roles[role] = append(perms, p)
		}
	case raftv1.AuthOp_AUTH_OP_ROLE_REVOKE_PERMISSION:
		perms, ok := s.roles[role]
		if !ok {
			return fmt.Errorf("%w: %q", ErrRoleNotFound, role)
		}
		i := findPerm(perms, c.GetPermission().GetKey(), c.GetPermission().GetRangeEnd())
		if i < 0 {
			return fmt.Errorf("%w: role %q has no permission on that key or range", ErrPermNotFound, role)
		}
		s.roles[role] = slices.Delete(perms, i, i+1)
	default:
		return fmt.Errorf("%w: unknown operation %v", ErrInvalid, c.GetOp())
	}
	return nil
}

func insertSorted(xs []string, x string) []string {
	i, _ := slices.BinarySearch(xs, x)
	return slices.Insert(xs, i, x)
}

func findPerm(perms []Permission, key, end []byte) int {
	return slices.IndexFunc(perms, func(p Permission) bool { return bytes.Equal(p.Key, key) && bytes.Equal(p.End, end) })
}

func permissionOf(p *raftv1.AuthPermission) (Permission, error) {
	t := Perm(p.GetType())
	if t != Read && t != Write && t != ReadWrite {
		return Permission{}, fmt.Errorf("%w: permission type must be read, write or readwrite", ErrInvalid)
	}
	if len(p.GetKey()) == 0 && !isAll(p.GetRangeEnd()) {
		return Permission{}, fmt.Errorf("%w: permission key must not be empty (use range end \"\\x00\" for every key)", ErrInvalid)
	}
	if end := p.GetRangeEnd(); len(end) > 0 && !isAll(end) && bytes.Compare(end, p.GetKey()) <= 0 {
		return Permission{}, fmt.Errorf("%w: permission range end must be after its key", ErrInvalid)
	}
	return Permission{Type: t, Key: bytes.Clone(p.GetKey()), End: bytes.Clone(p.GetRangeEnd())}, nil
}

// ValidName checks a user or role name: 1-128 printable ASCII characters
// without spaces or colons (kvdbctl's --user NAME:PASSWORD).
func ValidName(name string) error { return validName(name) }

func validName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w: a name must be 1 to %d characters", ErrInvalid, MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c > '~' || c == ':' {
			return fmt.Errorf("%w: name %q: only printable ASCII without spaces or ':' is allowed", ErrInvalid, name)
		}
	}
	return nil
}

// HashPassword returns the bcrypt hash a UserAdd or password change
// replicates. The hashing happens once, on the node that proposes.
func HashPassword(password string) ([]byte, error) {
	if password == "" {
		return nil, fmt.Errorf("%w: the password must not be empty (or create the user with no password)", ErrInvalid)
	}
	if len(password) > MaxPasswordLen {
		return nil, fmt.Errorf("%w: the password is over %d bytes", ErrInvalid, MaxPasswordLen)
	}
	return bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
}

// bcryptCost is bcrypt's default; tests lower it through SetBcryptCost.
var bcryptCost = bcrypt.DefaultCost

// SetBcryptCostForTests lowers the hashing cost so tests stay fast.
func SetBcryptCostForTests() { bcryptCost = bcrypt.MinCost }

// dummyHash is compared against when a user does not exist, so a failed
// login takes as long whether or not the name is known.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("kvdb-no-such-user"), bcrypt.MinCost)

// CheckPassword verifies name's password and returns the user's password
// revision (for the token). Every failure is ErrAuthFailed.
func (s *Store) CheckPassword(name, password string) (uint64, error) {
	s.mu.RLock()
	u, ok := s.users[name]
	var hash []byte
	var rev uint64
	if ok && u.hasPwd {
		hash, rev = u.hash, u.pwRev
	}
	s.mu.RUnlock()
	if hash == nil {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return 0, ErrAuthFailed
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return 0, ErrAuthFailed
	}
	return rev, nil
}

// IssueToken signs a token for name valid until now+ttl.
func (s *Store) IssueToken(name string, pwRev uint64, now time.Time, ttl time.Duration) (string, error) {
	s.mu.RLock()
	secret := s.secret
	s.mu.RUnlock()
	if len(secret) == 0 {
		return "", fmt.Errorf("%w: authentication is not enabled", ErrInvalid)
	}
	body := base64.RawURLEncoding.EncodeToString([]byte(name)) + "." + strconv.FormatUint(pwRev, 10) + "." + strconv.FormatInt(now.Add(ttl).Unix(), 10)
	return body + "." + sign(secret, body), nil
}

func sign(secret []byte, body string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(body))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// VerifyToken returns the user a token names, or ErrInvalidToken.
func (s *Store) VerifyToken(token string, now time.Time) (string, error) {
	name, _, err := s.VerifyTokenExpiry(token, now)
	return name, err
}

// VerifyTokenExpiry is VerifyToken also returning when the token expires.
func (s *Store) VerifyTokenExpiry(token string, now time.Time) (string, time.Time, error) {
	i := strings.LastIndexByte(token, '.')
	if i < 0 || len(token) > 1024 {
		return "", time.Time{}, ErrInvalidToken
	}
	body, mac := token[:i], token[i+1:]
	parts := strings.Split(body, ".")
	if len(parts) != 3 {
		return "", time.Time{}, ErrInvalidToken
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.secret) == 0 || !hmac.Equal([]byte(mac), []byte(sign(s.secret, body))) {
		return "", time.Time{}, ErrInvalidToken
	}
	nameB, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	pwRev, err2 := strconv.ParseUint(parts[1], 10, 64)
	exp, err3 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || now.Unix() >= exp {
		return "", time.Time{}, ErrInvalidToken
	}
	u, ok := s.users[string(nameB)]
	if !ok || u.pwRev != pwRev {
		return "", time.Time{}, ErrInvalidToken
	}
	return string(nameB), time.Unix(exp, 0), nil
}

// PasswordRevision returns the auth revision of name's creation or last
// password change, and whether the user exists: a session stays valid
// while both still match (a user deleted and created again has a new one).
func (s *Store) PasswordRevision(name string) (uint64, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, ok := s.users[name]
	if !ok {
		return 0, false
	}
	return u.pwRev, true
}

// IsRoot reports whether name holds the root role.
func (s *Store) IsRoot(name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, ok := s.users[name]
	return ok && slices.Contains(u.roles, Root)
}

// Check is what one request's permission check needs under one read lock:
// whether name still exists (and, for a session, still has password
// revision rev) and whether it may do perm on key or [key, end).
func (s *Store) Check(name string, rev uint64, session bool, perm Perm, key, end []byte) (valid, allowed bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, ok := s.users[name]
	if !ok || (session && u.pwRev != rev) {
		return false, false
	}
	return true, s.allowedLocked(u, perm, key, end)
}

// Allowed reports whether name may do perm on key, or on every key of
// [key, end) when end is set. Root may do everything.
func (s *Store) Allowed(name string, perm Perm, key, end []byte) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, ok := s.users[name]
	if !ok {
		return false
	}
	return s.allowedLocked(u, perm, key, end)
}

func (s *Store) allowedLocked(u *user, perm Perm, key, end []byte) bool {
	for _, r := range u.roles {
		if r == Root {
			return true
		}
		for _, p := range s.roles[r] {
			if p.Type&perm == perm && p.covers(key, end) {
				return true
			}
		}
	}
	return false
}

// UserRoles returns a user's roles.
func (s *Store) UserRoles(name string) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, ok := s.users[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUserNotFound, name)
	}
	return slices.Clone(u.roles), nil
}

// Users lists the user names, sorted.
func (s *Store) Users() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return sortedKeys(s.users)
}

// Roles lists the role names, sorted.
func (s *Store) Roles() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return sortedKeys(s.roles)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// RolePermissions returns a role's permissions.
func (s *Store) RolePermissions(role string) ([]Permission, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	perms, ok := s.roles[role]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrRoleNotFound, role)
	}
	return slices.Clone(perms), nil
}

// State returns the whole state, for a snapshot.
func (s *Store) State() *raftv1.AuthState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := &raftv1.AuthState{Enabled: s.enabled, TokenSecret: bytes.Clone(s.secret), Revision: s.rev}
	for _, n := range sortedKeys(s.users) {
		u := s.users[n]
		st.Users = append(st.Users, &raftv1.AuthUser{Name: n, PasswordHash: bytes.Clone(u.hash), Roles: slices.Clone(u.roles), PasswordRevision: u.pwRev})
	}
	for _, n := range sortedKeys(s.roles) {
		r := &raftv1.AuthRole{Name: n}
		for _, p := range s.roles[n] {
			r.Permissions = append(r.Permissions, &raftv1.AuthPermission{Type: uint32(p.Type), Key: p.Key, RangeEnd: p.End})
		}
		st.Roles = append(st.Roles, r)
	}
	return st
}

// Restore replaces the state with st (nil: the empty state).
func (s *Store) Restore(st *raftv1.AuthState) error {
	users := map[string]*user{}
	roles := map[string][]Permission{}
	for _, r := range st.GetRoles() {
		var perms []Permission
		for _, p := range r.GetPermissions() {
			perm, err := permissionOf(p)
			if err != nil {
				return err
			}
			perms = append(perms, perm)
		}
		roles[r.GetName()] = perms
	}
	for _, u := range st.GetUsers() {
		users[u.GetName()] = &user{hash: u.GetPasswordHash(), roles: slices.Sorted(slices.Values(u.GetRoles())),
			pwRev: u.GetPasswordRevision(), hasPwd: len(u.GetPasswordHash()) > 0}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enabled, s.secret, s.users, s.roles, s.rev = st.GetEnabled(), st.GetTokenSecret(), users, roles, st.GetRevision()
	s.on.Store(s.enabled)
	s.revA.Store(s.rev)
	return nil
}

// Marshal encodes the state for a snapshot.
func (s *Store) Marshal() ([]byte, error) { return proto.Marshal(s.State()) }

// Unmarshal restores a state Marshal encoded.
func (s *Store) Unmarshal(b []byte) error {
	var st raftv1.AuthState
	if err := proto.Unmarshal(b, &st); err != nil {
		return err
	}
	return s.Restore(&st)
}
