package core

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	"github.com/kvdb/kvdb/internal/auth"
	"github.com/kvdb/kvdb/internal/command"
)

// Authentication and permissions. While auth is enabled every operation is
// checked here, once for every transport: the adapters only put the
// caller's identity into the context (WithUser) after verifying its token
// or its binary-protocol AUTH, and the checks below decide.
//
//   - reads (Get, Range, transaction reads, compares) need read permission
//     on every key or range they touch; writes (Put, Delete, Batch,
//     transaction writes) need write permission;
//   - Begin, Commit and Rollback need an authenticated caller, and a
//     transaction can only be used by the user who began it;
//   - administration and auth management need the root role (RequireRoot).
//
// With auth disabled every check passes.

var (
	// ErrUnauthenticated is a request without a valid identity while auth
	// is enabled.
	ErrUnauthenticated = errors.New("authentication required: authenticate (kvdbctl --user NAME) and send the token with every request")
	// ErrPermissionDenied is a request the caller's roles do not allow.
	ErrPermissionDenied = errors.New("permission denied")
)

// DefaultTokenTTL is how long a token from Authenticate stays valid.
const DefaultTokenTTL = 5 * time.Minute

type userKey struct{}

// identity is who a request acts as. A session (a binary-protocol
// connection after AUTH) also remembers the user's password revision, so a
// password change ends it on its next request.
type identity struct {
	name    string
	rev     uint64
	session bool
}

// WithUser returns ctx carrying the authenticated user name (a request
// whose token was just verified).
func WithUser(ctx context.Context, user string) context.Context {
	return context.WithValue(ctx, userKey{}, identity{name: user})
}

// UserOf returns the authenticated user ctx carries.
func UserOf(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(userKey{}).(identity)
	return id.name, ok && id.name != ""
}

// OpenSession authenticates a connection that will carry many requests:
// with a user name, by password (slow, as every password check is); with
// an empty name, password is a token from Authenticate (fast: a client
// with many connections checks its password once). It returns base
// carrying the user until the user's password changes or the user is
// removed.
func (c *Core) OpenSession(base context.Context, name, password, from string) (context.Context, error) {
	if !c.auth.Enabled() {
		return nil, Errorf(FailedPrecondition, "authentication is not enabled")
	}
	if name == "" {
		user, err := c.VerifyToken(password)
		if err != nil {
			c.authFailures.Add(1)
			return nil, err
		}
		name = user
	} else if _, err := c.Authenticate(base, name, password, from); err != nil {
		return nil, err
	}
	rev, ok := c.auth.PasswordRevision(name)
	if !ok {
		return nil, auth.ErrAuthFailed
	}
	return context.WithValue(base, userKey{}, identity{name: name, rev: rev, session: true}), nil
}

// AuthEnabled reports whether authentication is on.
func (c *Core) AuthEnabled() bool { return c.auth.Enabled() }

// authenticated returns the caller, or ErrUnauthenticated while auth is on.
func (c *Core) authenticated(ctx context.Context) (string, error) {
	id, _ := ctx.Value(userKey{}).(identity)
	if !c.auth.Enabled() {
		return id.name, nil
	}
	if id.name == "" {
		return "", ErrUnauthenticated
	}
	if id.session {
		if rev, ok := c.auth.PasswordRevision(id.name); !ok || rev != id.rev {
			return "", fmt.Errorf("%w (the user's password changed or the user was removed)", ErrUnauthenticated)
		}
	}
	return id.name, nil
}

// CheckAuthenticated fails with ErrUnauthenticated when auth is on and ctx
// carries no user.
func (c *Core) CheckAuthenticated(ctx context.Context) error {
	_, err := c.authenticated(ctx)
	return err
}

// authRevision is the auth revision a permission check about to be made
// is made against, for the entry to carry (auth.ErrOldRevision); 0 while
// authentication is off. Read before the check: the state the check sees
// is at least as new.
func (c *Core) authRevision() uint64 {
	if !c.auth.Enabled() {
		return 0
	}
	return c.auth.Revision()
}

// authorize checks perm on key (end empty) or on every key of [key, end),
// and, for a session, that it is still valid: one look at the auth state.
// authorizeWrite checks the caller may write key (or [key, end)) and, when
// the write returns the previous key-values (prevKV), read them too: a
// write-only user must not read values through prev_kv, as in etcd.
func (c *Core) authorizeWrite(ctx context.Context, key, end []byte, prevKV bool) error {
	if err := c.authorize(ctx, auth.Write, key, end); err != nil {
		return err
	}
	if prevKV {
		return c.authorize(ctx, auth.Read, key, end)
	}
	return nil
}

func (c *Core) authorize(ctx context.Context, perm auth.Perm, key, end []byte) error {
	if !c.auth.Enabled() {
		return nil
	}
	id, _ := ctx.Value(userKey{}).(identity)
	if id.name == "" {
		return ErrUnauthenticated
	}
	u := id.name
	valid, allowed := c.auth.Check(u, id.rev, id.session, perm, key, end)
	if !valid {
		return fmt.Errorf("%w (the user's password changed or the user was removed)", ErrUnauthenticated)
	}
	if !allowed {
		if len(end) > 0 {
			return fmt.Errorf("%w: user %q may not %s the range [%q, %q)", ErrPermissionDenied, u, perm, key, end)
		}
		return fmt.Errorf("%w: user %q may not %s key %q", ErrPermissionDenied, u, perm, key)
	}
	return nil
}

// RequireRoot allows only the root role while auth is on: administration
// and auth management.
func (c *Core) RequireRoot(ctx context.Context) error {
	if !c.auth.Enabled() {
		return nil
	}
	u, err := c.authenticated(ctx)
	if err != nil {
		return err
	}
	if !c.auth.IsRoot(u) {
		return fmt.Errorf("%w: user %q does not have the root role", ErrPermissionDenied, u)
	}
	return nil
}

// VerifyToken returns the user a token names. Tokens verified once are
// remembered until they expire or the auth state changes (any change: a
// password, a user, the secret), so a client's calls cost a map look-up,
// not a signature check each.
func (c *Core) VerifyToken(token string) (string, error) {
	now := time.Now()
	rev := c.auth.Revision()
	c.tokMu.RLock()
	e, ok := c.tokens[token]
	fresh := c.tokRev == rev
	c.tokMu.RUnlock()
	if ok && fresh && now.Before(e.exp) {
		return e.name, nil
	}
	name, exp, err := c.auth.VerifyTokenExpiry(token, now)
	if err != nil {
		return "", err
	}
	c.tokMu.Lock()
	if c.tokRev != rev || len(c.tokens) >= maxCachedTokens {
		c.tokens, c.tokRev = make(map[string]cachedToken), rev
	}
	c.tokens[token] = cachedToken{name: name, exp: exp}
	c.tokMu.Unlock()
	return name, nil
}

// maxCachedTokens bounds the verified-token cache; past it the cache
// starts over.
const maxCachedTokens = 4096

type cachedToken struct {
	name string
	exp  time.Time
}

// Authenticate checks a user's password and returns a token. from (the
// client's address) keys the failed-login limiter with the name.
func (c *Core) Authenticate(ctx context.Context, name, password, from string) (string, error) {
	if !c.auth.Enabled() {
		return "", Errorf(FailedPrecondition, "authentication is not enabled")
	}
	now := time.Now()
	if len(name) > auth.MaxNameLen || len(password) > auth.MaxPasswordLen {
		// Longer than any user or password can be: fail as a wrong
		// password would, without hashing a large input.
		c.limiter.Failed(name[:min(len(name), auth.MaxNameLen)], from, now)
		c.authFailures.Add(1)
		return "", auth.ErrAuthFailed
	}
	if err := c.limiter.Check(name, from, now); err != nil {
		c.authFailures.Add(1)
		return "", err
	}
	rev, err := c.auth.CheckPassword(name, password)
	if err != nil {
		c.limiter.Failed(name, from, now)
		c.authFailures.Add(1)
		return "", err
	}
	c.limiter.Succeeded(name)
	return c.auth.IssueToken(name, rev, now, c.cfg.TokenTTL)
}

// AuthFailures counts failed and throttled logins.
func (c *Core) AuthFailures() int64 { return c.authFailures.Load() }

// proposeAuth replicates one auth change and returns its error, if refused.
func (c *Core) proposeAuth(ctx context.Context, cmd *raftv1.AuthCommand) error {
	authRev := c.authRevision()
	if err := c.RequireRoot(ctx); err != nil {
		return err
	}
	if err := c.checkAuthCommand(cmd); err != nil {
		return err
	}
	data, err := command.EncodeAuth(cmd)
	if err != nil {
		return err
	}
	ctx, cancel := c.requestContext(ctx)
	defer cancel()
	_, err = c.proposeAlone(ctx, command.StampAuthRevision(data, authRev))
	return err
}

// checkAuthCommand bounds what one auth change may carry before it goes
// into the log: names as auth.ValidName allows them, permission keys as
// any key.
func (c *Core) checkAuthCommand(cmd *raftv1.AuthCommand) error {
	if err := checkNames(cmd.GetUser(), cmd.GetRole()); err != nil {
		return err
	}
	if p := cmd.GetPermission(); len(p.GetKey()) > c.limits.MaxKeySize || len(p.GetRangeEnd()) > c.limits.MaxKeySize {
		return invalidf("permission key and range end are limited to max-key-size (%d bytes)", c.limits.MaxKeySize)
	}
	return nil
}

// checkNames validates the user and role names a call gives ("" : none).
func checkNames(names ...string) error {
	for _, n := range names {
		if n != "" {
			if err := auth.ValidName(n); err != nil {
				return err
			}
		}
	}
	return nil
}

// AuthEnable turns authentication on with a fresh token secret (tokens
// from an earlier enable stop working). A root user must exist.
func (c *Core) AuthEnable(ctx context.Context) error {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	return c.proposeAuth(ctx, &raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_ENABLE, TokenSecret: secret})
}

// AuthDisable turns authentication off.
func (c *Core) AuthDisable(ctx context.Context) error {
	return c.proposeAuth(ctx, &raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_DISABLE})
}

// UserAdd creates a user; noPassword makes one that cannot log in.
func (c *Core) UserAdd(ctx context.Context, name, password string, noPassword bool) error {
	if err := c.RequireRoot(ctx); err != nil {
		return err
	}
	cmd := &raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_USER_ADD, User: name}
	if err := auth.ValidName(name); err != nil {
		return err
	}
	if !noPassword {
		h, err := auth.HashPassword(password)
		if err != nil {
			return err
		}
		cmd.PasswordHash = h
	}
	return c.proposeAuth(ctx, cmd)
}

// UserChangePassword replaces a user's password.
func (c *Core) UserChangePassword(ctx context.Context, name, password string) error {
	if err := c.RequireRoot(ctx); err != nil {
		return err
	}
	h, err := auth.HashPassword(password)
	if err != nil {
		return err
	}
	return c.proposeAuth(ctx, &raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_USER_PASSWORD, User: name, PasswordHash: h})
}

// UserDelete, UserGrantRole, UserRevokeRole, RoleAdd and RoleDelete
// replicate the change they name.
func (c *Core) UserDelete(ctx context.Context, name string) error {
	return c.proposeAuth(ctx, &raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_USER_DELETE, User: name})
}

// UserGrantRole gives user the role.
func (c *Core) UserGrantRole(ctx context.Context, user, role string) error {
	return c.proposeAuth(ctx, &raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_USER_GRANT_ROLE, User: user, Role: role})
}

// UserRevokeRole takes the role from user.
func (c *Core) UserRevokeRole(ctx context.Context, user, role string) error {
	return c.proposeAuth(ctx, &raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_USER_REVOKE_ROLE, User: user, Role: role})
}

// RoleAdd creates a role.
func (c *Core) RoleAdd(ctx context.Context, role string) error {
	return c.proposeAuth(ctx, &raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_ROLE_ADD, Role: role})
}

// RoleDelete removes a role from the cluster and from every user.
func (c *Core) RoleDelete(ctx context.Context, role string) error {
	return c.proposeAuth(ctx, &raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_ROLE_DELETE, Role: role})
}

// RoleGrantPermission adds (or retypes) a role's permission on a key or
// range.
func (c *Core) RoleGrantPermission(ctx context.Context, role string, p auth.Permission) error {
	return c.proposeAuth(ctx, &raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_ROLE_GRANT_PERMISSION, Role: role,
		Permission: &raftv1.AuthPermission{Type: uint32(p.Type), Key: p.Key, RangeEnd: p.End}})
}

// RoleRevokePermission removes a role's permission on [key, end).
func (c *Core) RoleRevokePermission(ctx context.Context, role string, key, end []byte) error {
	return c.proposeAuth(ctx, &raftv1.AuthCommand{Op: raftv1.AuthOp_AUTH_OP_ROLE_REVOKE_PERMISSION, Role: role,
		Permission: &raftv1.AuthPermission{Key: key, RangeEnd: end}})
}

// authRead makes a read of the auth state linearizable and root-only, and
// validates the names it is about.
func (c *Core) authRead(ctx context.Context, names ...string) error {
	if err := c.RequireRoot(ctx); err != nil {
		return err
	}
	if err := checkNames(names...); err != nil {
		return err
	}
	return c.WaitRead(ctx, false)
}

// UserGet returns a user's roles.
func (c *Core) UserGet(ctx context.Context, name string) ([]string, error) {
	if err := c.authRead(ctx, name); err != nil {
		return nil, err
	}
	return c.auth.UserRoles(name)
}

// UserList lists the users.
func (c *Core) UserList(ctx context.Context) ([]string, error) {
	if err := c.authRead(ctx); err != nil {
		return nil, err
	}
	return c.auth.Users(), nil
}

// RoleGet returns a role's permissions.
func (c *Core) RoleGet(ctx context.Context, role string) ([]auth.Permission, error) {
	if err := c.authRead(ctx, role); err != nil {
		return nil, err
	}
	return c.auth.RolePermissions(role)
}

// RoleList lists the roles.
func (c *Core) RoleList(ctx context.Context) ([]string, error) {
	if err := c.authRead(ctx); err != nil {
		return nil, err
	}
	return c.auth.Roles(), nil
}

// AuthStatus says whether auth is on and how many changes were applied.
func (c *Core) AuthStatus(ctx context.Context) (bool, uint64, error) {
	if err := c.authRead(ctx); err != nil {
		return false, 0, err
	}
	return c.auth.Enabled(), c.auth.Revision(), nil
}
