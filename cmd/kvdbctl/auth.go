package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/engine"
)

// Users, roles and authentication, with etcdctl's command names:
//
//	kvdbctl --user root user add alice --new-user-password s3cret
//	kvdbctl --user root role add app
//	kvdbctl --user root role grant-permission app readwrite app/ --prefix
//	kvdbctl --user root user grant-role alice app
//	kvdbctl --user root auth enable
//
// --user NAME[:PASSWORD] (and --password) authenticate every request; a
// password left out is asked for when stdin is a terminal.

// addAuthFlags registers --user and --password.
func addAuthFlags(root *cobra.Command, a *app) {
	pf := root.PersistentFlags()
	pf.StringVar(&a.userFlag, "user", "", "authenticate as NAME[:PASSWORD] (asks for the password on a terminal when it is left out; env KVDB_USER)")
	pf.StringVar(&a.password, "password", "", "password of --user (env KVDB_PASSWORD)")
}

// resolveAuth splits --user NAME:PASSWORD, applies the environment, and
// asks for a missing password on a terminal.
func (a *app) resolveAuth() error {
	if a.userFlag == "" {
		a.userFlag = a.getenv("KVDB_USER")
	}
	if a.password == "" {
		a.password = a.getenv("KVDB_PASSWORD")
	}
	if a.userFlag == "" {
		return nil
	}
	name, pw, hasPw := strings.Cut(a.userFlag, ":")
	a.user = name
	if hasPw {
		a.password = pw
	}
	if a.password != "" {
		return nil
	}
	p, err := a.askPassword(fmt.Sprintf("Password for %s: ", name))
	if err != nil {
		return fmt.Errorf("--user %s needs a password: give --user %s:PASSWORD or --password, or run on a terminal (%w)", name, name, err)
	}
	a.password = p
	return nil
}

// askPassword reads a password without echo from the terminal on stdin.
func (a *app) askPassword(prompt string) (string, error) {
	f, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", errors.New("stdin is not a terminal")
	}
	fmt.Fprint(a.stderr, prompt)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(a.stderr)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// newPassword is --new-user-password, or asked for twice on a terminal.
func (a *app) newPassword(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	p1, err := a.askPassword("New password: ")
	if err != nil {
		return "", fmt.Errorf("give the password with --new-user-password, or run on a terminal (%w)", err)
	}
	p2, err := a.askPassword("Again: ")
	if err != nil {
		return "", err
	}
	if p1 != p2 {
		return "", errors.New("the passwords differ")
	}
	return p1, nil
}

func authRPC[T any](a *app, rpc func(context.Context, kvdbv1.AuthServiceClient) (T, error)) func(*cobra.Command, []string) (T, error) {
	return func(cmd *cobra.Command, _ []string) (T, error) {
		return invoke(cmd.Context(), a, func(ctx context.Context, c *client) (T, error) {
			return rpc(ctx, kvdbv1.NewAuthServiceClient(c.conn))
		})
	}
}

// done prints what a change did, or its JSON acknowledgement.
func (a *app) done(w io.Writer, msg string) error {
	if a.output == outputJSON {
		return writeJSON(w, map[string]any{"ok": true, "message": msg})
	}
	_, err := fmt.Fprintln(w, msg)
	return err
}

func (a *app) names(w io.Writer, key string, names []string) error {
	if a.output == outputJSON {
		return writeJSON(w, map[string]any{key: names})
	}
	for _, n := range names {
		if _, err := fmt.Fprintln(w, n); err != nil {
			return err
		}
	}
	return nil
}

func newUserCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Add, list, inspect and remove users (root only while auth is enabled)"}
	var newPw string
	var noPw bool
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a user (asks for the password on a terminal, or --new-user-password)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw := ""
			if !noPw {
				var err error
				if pw, err = a.newPassword(newPw); err != nil {
					return err
				}
			}
			_, err := authRPC(a, func(ctx context.Context, c kvdbv1.AuthServiceClient) (*kvdbv1.UserAddResponse, error) {
				return c.UserAdd(ctx, &kvdbv1.UserAddRequest{Name: args[0], Password: pw, NoPassword: noPw})
			})(cmd, args)
			if err != nil {
				return err
			}
			return a.done(cmd.OutOrStdout(), "User "+args[0]+" created")
		},
	}
	add.Flags().StringVar(&newPw, "new-user-password", "", "the new user's password (for scripts)")
	add.Flags().BoolVar(&noPw, "no-password", false, "a user that cannot log in with a password")
	passwd := &cobra.Command{
		Use:   "passwd NAME",
		Short: "Change a user's password (its tokens stop working on every node)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := a.newPassword(newPw)
			if err != nil {
				return err
			}
			if _, err := authRPC(a, func(ctx context.Context, c kvdbv1.AuthServiceClient) (*kvdbv1.UserChangePasswordResponse, error) {
				return c.UserChangePassword(ctx, &kvdbv1.UserChangePasswordRequest{Name: args[0], Password: pw})
			})(cmd, args); err != nil {
				return err
			}
			return a.done(cmd.OutOrStdout(), "Password updated")
		},
	}
	passwd.Flags().StringVar(&newPw, "new-user-password", "", "the new password (for scripts)")
	cmd.AddCommand(add, passwd,
		&cobra.Command{
			Use: "delete NAME", Short: "Delete a user", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if _, err := authRPC(a, func(ctx context.Context, c kvdbv1.AuthServiceClient) (*kvdbv1.UserDeleteResponse, error) {
					return c.UserDelete(ctx, &kvdbv1.UserDeleteRequest{Name: args[0]})
				})(cmd, args); err != nil {
					return err
				}
				return a.done(cmd.OutOrStdout(), "User "+args[0]+" deleted")
			},
		},
		&cobra.Command{
			Use: "list", Short: "List the users", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				resp, err := authRPC(a, func(ctx context.Context, c kvdbv1.AuthServiceClient) (*kvdbv1.UserListResponse, error) {
					return c.UserList(ctx, &kvdbv1.UserListRequest{})
				})(cmd, args)
				if err != nil {
					return err
				}
				return a.names(cmd.OutOrStdout(), "users", resp.GetUsers())
			},
		},
		&cobra.Command{
			Use: "get NAME", Short: "Show a user's roles", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				resp, err := authRPC(a, func(ctx context.Context, c kvdbv1.AuthServiceClient) (*kvdbv1.UserGetResponse, error) {
					return c.UserGet(ctx, &kvdbv1.UserGetRequest{Name: args[0]})
				})(cmd, args)
				if err != nil {
					return err
				}
				if a.output == outputJSON {
					return writeJSON(cmd.OutOrStdout(), map[string]any{"user": args[0], "roles": resp.GetRoles()})
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "User: %s\nRoles: %s\n", args[0], strings.Join(resp.GetRoles(), " "))
				return err
			},
		},
		&cobra.Command{
			Use: "grant-role USER ROLE", Short: "Give a user a role", Args: cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				if _, err := authRPC(a, func(ctx context.Context, c kvdbv1.AuthServiceClient) (*kvdbv1.UserGrantRoleResponse, error) {
					return c.UserGrantRole(ctx, &kvdbv1.UserGrantRoleRequest{User: args[0], Role: args[1]})
				})(cmd, args); err != nil {
					return err
				}
				return a.done(cmd.OutOrStdout(), "Role "+args[1]+" is granted to user "+args[0])
			},
		},
		&cobra.Command{
			Use: "revoke-role USER ROLE", Short: "Take a role from a user", Args: cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				if _, err := authRPC(a, func(ctx context.Context, c kvdbv1.AuthServiceClient) (*kvdbv1.UserRevokeRoleResponse, error) {
					return c.UserRevokeRole(ctx, &kvdbv1.UserRevokeRoleRequest{Name: args[0], Role: args[1]})
				})(cmd, args); err != nil {
					return err
				}
				return a.done(cmd.OutOrStdout(), "Role "+args[1]+" is revoked from user "+args[0])
			},
		},
	)
	return cmd
}

var permTypes = map[string]kvdbv1.PermissionType{
	"read":      kvdbv1.PermissionType_PERMISSION_TYPE_READ,
	"write":     kvdbv1.PermissionType_PERMISSION_TYPE_WRITE,
	"readwrite": kvdbv1.PermissionType_PERMISSION_TYPE_READWRITE,
}

// permRange turns KEY [RANGE_END] [--prefix] into the key and range end.
func permRange(args []string, prefix bool) ([]byte, []byte, error) {
	key := []byte(args[0])
	var end []byte
	if len(args) > 1 {
		if prefix {
			return nil, nil, &usageError{err: errors.New("give RANGE_END or --prefix, not both")}
		}
		end = []byte(args[1])
	}
	if prefix {
		end = engine.PrefixEnd(key)
	}
	return key, end, nil
}

func newRoleCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "role", Short: "Add, list, inspect and remove roles and their permissions (root only while auth is enabled)"}
	var grantPrefix, revokePrefix bool
	grant := &cobra.Command{
		Use:   "grant-permission ROLE read|write|readwrite KEY [RANGE_END]",
		Short: "Allow a role to read, write or both on a key, a range [KEY, RANGE_END) or, with --prefix, every key starting with KEY",
		Args:  cobra.RangeArgs(3, 4),
		RunE: func(cmd *cobra.Command, args []string) error {
			pt, ok := permTypes[strings.ToLower(args[1])]
			if !ok {
				return &usageError{err: fmt.Errorf("permission %q: want read, write or readwrite", args[1])}
			}
			key, end, err := permRange(args[2:], grantPrefix)
			if err != nil {
				return err
			}
			if _, err := authRPC(a, func(ctx context.Context, c kvdbv1.AuthServiceClient) (*kvdbv1.RoleGrantPermissionResponse, error) {
				return c.RoleGrantPermission(ctx, &kvdbv1.RoleGrantPermissionRequest{Name: args[0], Perm: &kvdbv1.Permission{PermType: pt, Key: key, RangeEnd: end}})
			})(cmd, args); err != nil {
				return err
			}
			return a.done(cmd.OutOrStdout(), "Role "+args[0]+" updated")
		},
	}
	grant.Flags().BoolVar(&grantPrefix, "prefix", false, "KEY is a prefix")
	revoke := &cobra.Command{
		Use:   "revoke-permission ROLE KEY [RANGE_END]",
		Short: "Remove a role's permission on a key, a range or (--prefix) a prefix",
		Args:  cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, end, err := permRange(args[1:], revokePrefix)
			if err != nil {
				return err
			}
			if _, err := authRPC(a, func(ctx context.Context, c kvdbv1.AuthServiceClient) (*kvdbv1.RoleRevokePermissionResponse, error) {
				return c.RoleRevokePermission(ctx, &kvdbv1.RoleRevokePermissionRequest{Role: args[0], Key: key, RangeEnd: end})
			})(cmd, args); err != nil {
				return err
			}
			return a.done(cmd.OutOrStdout(), "Permission of role "+args[0]+" revoked")
		},
	}
	revoke.Flags().BoolVar(&revokePrefix, "prefix", false, "KEY is a prefix")
	cmd.AddCommand(grant, revoke,
		&cobra.Command{
			Use: "add NAME", Short: "Add a role", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if _, err := authRPC(a, func(ctx context.Context, c kvdbv1.AuthServiceClient) (*kvdbv1.RoleAddResponse, error) {
					return c.RoleAdd(ctx, &kvdbv1.RoleAddRequest{Name: args[0]})
				})(cmd, args); err != nil {
					return err
				}
				return a.done(cmd.OutOrStdout(), "Role "+args[0]+" created")
			},
		},
		&cobra.Command{
			Use: "delete NAME", Short: "Delete a role (and take it from every user)", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if _, err := authRPC(a, func(ctx context.Context, c kvdbv1.AuthServiceClient) (*kvdbv1.RoleDeleteResponse, error) {
					return c.RoleDelete(ctx, &kvdbv1.RoleDeleteRequest{Role: args[0]})
				})(cmd, args); err != nil {
					return err
				}
				return a.done(cmd.OutOrStdout(), "Role "+args[0]+" deleted")
			},
		},
		&cobra.Command{
			Use: "list", Short: "List the roles", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				resp, err := authRPC(a, func(ctx context.Context, c kvdbv1.AuthServiceClient) (*kvdbv1.RoleListResponse, error) {
					return c.RoleList(ctx, &kvdbv1.RoleListRequest{})
				})(cmd, args)
				if err != nil {
					return err
				}
				return a.names(cmd.OutOrStdout(), "roles", resp.GetRoles())
			},
		},
		&cobra.Command{
			Use: "get NAME", Short: "Show a role's permissions", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				resp, err := authRPC(a, func(ctx context.Context, c kvdbv1.AuthServiceClient) (*kvdbv1.RoleGetResponse, error) {
					return c.RoleGet(ctx, &kvdbv1.RoleGetRequest{Role: args[0]})
				})(cmd, args)
				if err != nil {
					return err
				}
				return a.printPerms(cmd.OutOrStdout(), args[0], resp.GetPerm())
			},
		},
	)
	return cmd
}

func (a *app) printPerms(w io.Writer, role string, perms []*kvdbv1.Permission) error {
	name := func(t kvdbv1.PermissionType) string {
		for n, v := range permTypes {
			if v == t {
				return n
			}
		}
		return t.String()
	}
	if a.output == outputJSON {
		var out []map[string]string
		for _, p := range perms {
			out = append(out, map[string]string{"type": name(p.GetPermType()), "key": string(p.GetKey()), "range_end": string(p.GetRangeEnd())})
		}
		return writeJSON(w, map[string]any{"role": role, "permissions": out})
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "Role %s\n", role)
	for _, p := range perms {
		switch end := p.GetRangeEnd(); {
		case len(end) == 0:
			fmt.Fprintf(bw, "  %s %q\n", name(p.GetPermType()), p.GetKey())
		case string(end) == string(engine.PrefixEnd(p.GetKey())):
			fmt.Fprintf(bw, "  %s %q (prefix)\n", name(p.GetPermType()), p.GetKey())
		default:
			fmt.Fprintf(bw, "  %s [%q, %q)\n", name(p.GetPermType()), p.GetKey(), end)
		}
	}
	return bw.Flush()
}

func newAuthCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "auth", Short: "Enable, disable or show authentication (root only while it is enabled)"}
	cmd.AddCommand(
		&cobra.Command{
			Use: "enable", Short: "Turn authentication on (a root user must exist)", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				if _, err := authRPC(a, func(ctx context.Context, c kvdbv1.AuthServiceClient) (*kvdbv1.AuthEnableResponse, error) {
					return c.AuthEnable(ctx, &kvdbv1.AuthEnableRequest{})
				})(cmd, args); err != nil {
					return err
				}
				return a.done(cmd.OutOrStdout(), "Authentication Enabled")
			},
		},
		&cobra.Command{
			Use: "disable", Short: "Turn authentication off", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				if _, err := authRPC(a, func(ctx context.Context, c kvdbv1.AuthServiceClient) (*kvdbv1.AuthDisableResponse, error) {
					return c.AuthDisable(ctx, &kvdbv1.AuthDisableRequest{})
				})(cmd, args); err != nil {
					return err
				}
				return a.done(cmd.OutOrStdout(), "Authentication Disabled")
			},
		},
		&cobra.Command{
			Use: "status", Short: "Show whether authentication is on", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				resp, err := authRPC(a, func(ctx context.Context, c kvdbv1.AuthServiceClient) (*kvdbv1.AuthStatusResponse, error) {
					return c.AuthStatus(ctx, &kvdbv1.AuthStatusRequest{})
				})(cmd, args)
				if err != nil {
					return err
				}
				if a.output == outputJSON {
					return writeJSON(cmd.OutOrStdout(), map[string]any{"enabled": resp.GetEnabled(), "auth_revision": resp.GetAuthRevision()})
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "Authentication Status: %v\nAuthRevision: %d\n", resp.GetEnabled(), resp.GetAuthRevision())
				return err
			},
		},
	)
	return cmd
}
