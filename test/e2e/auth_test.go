package e2e

import (
	"strings"
	"testing"
)

// TestUsersAndPermissionsFlow is the README's "Users and permissions"
// section with the real binaries, on both protocols: set up root, alice
// and a role, enable auth, then alice may write her prefix only, anonymous
// requests are refused, and root administers.
func TestUsersAndPermissionsFlow(t *testing.T) {
	addr := freeAddr(t)
	startServer(t, addr, t.TempDir())
	run := func(wantCode int, wantOut string, args ...string) string {
		t.Helper()
		// A password is hashed (bcrypt) on a node that may share two
		// loaded cores with the whole test suite: give each call room.
		out, errOut, code := ctl(t, addr, "", append([]string{"--timeout", "60s"}, args...)...)
		if code != wantCode || !strings.Contains(out+errOut, wantOut) {
			t.Fatalf("kvdbctl %v: code %d (want %d), out %q err %q, want %q in them", args, code, wantCode, out, errOut, wantOut)
		}
		return out
	}
	run(0, "User root created", "user", "add", "root", "--new-user-password", "r00t-pw")
	run(0, "User alice created", "user", "add", "alice", "--new-user-password", "alice-pw")
	run(0, "Role app created", "role", "add", "app")
	run(0, "updated", "role", "grant-permission", "app", "readwrite", "app/", "--prefix")
	run(0, "granted", "user", "grant-role", "alice", "app")
	run(0, "Enabled", "auth", "enable")

	for _, proto := range []string{"grpc", "binary"} {
		run(0, "OK", "--protocol", proto, "--user", "alice:alice-pw", "put", "app/x", "1")
		run(1, "(PermissionDenied)", "--protocol", proto, "--user", "alice:alice-pw", "put", "other", "1")
		run(1, "(Unauthenticated)", "--protocol", proto, "get", "app/x")
		run(1, "(Unauthenticated)", "--protocol", proto, "--user", "alice:wrong", "get", "app/x")
		run(0, "1", "--protocol", proto, "--user", "alice:alice-pw", "get", "app/x")
	}
	// No password and no terminal: a clear usage error, not a hang.
	run(1, "needs a password", "--user", "alice", "get", "app/x")
	run(1, "(PermissionDenied)", "--user", "alice:alice-pw", "user", "list")
	out := run(0, "alice", "--user", "root:r00t-pw", "user", "list")
	if !strings.Contains(out, "root") {
		t.Fatalf("user list: %q", out)
	}
	run(0, "app/", "--user", "root:r00t-pw", "role", "get", "app")
	run(0, "true", "--user", "root:r00t-pw", "auth", "status")
	run(0, "Disabled", "--user", "root:r00t-pw", "auth", "disable")
	run(0, "1", "get", "app/x")
}
