package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/kvdb/kvdb/internal/clustertest"
)

// TestLeaseCommands runs etcdctl's lease workflow against a real node:
// grant, put --lease, keep-alive --once, timetolive --keys, list, revoke
// (which deletes the key); put --ttl and the shell's TTL.
func TestLeaseCommands(t *testing.T) {
	_, addr := startRealNode(t)
	cli := func(args ...string) string {
		t.Helper()
		out, errOut, code := runCLI(t, nil, "", append([]string{"--address", addr}, args...)...)
		if code != 0 {
			t.Fatalf("kvdbctl %v: exit %d: %s", args, code, errOut)
		}
		return out
	}
	out := cli("lease", "grant", "600")
	m := regexp.MustCompile(`^lease ([0-9a-f]+) granted with TTL\(600s\)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("grant printed %q", out)
	}
	id := m[1]
	tests := []struct {
		args []string
		want string // a regexp
	}{
		{[]string{"put", "svc/a", "addr", "--lease", id}, `^OK\n$`},
		{[]string{"lease", "keep-alive", id, "--once"}, `^lease ` + id + ` keepalived with TTL\(600\)\n$`},
		{[]string{"lease", "timetolive", id}, `^lease ` + id + ` granted with TTL\(600s\), remaining\(\d+s\)\n$`},
		{[]string{"lease", "timetolive", id, "--keys"}, `attached keys\(\[svc/a\]\)`},
		{[]string{"lease", "list"}, `^found 1 leases\n` + id + `\n$`},
		{[]string{"put", "sess", "v", "--ttl", "1h"}, `^OK\n$`},
		{[]string{"lease", "revoke", id}, `^lease ` + id + ` revoked\n$`},
		{[]string{"lease", "timetolive", id}, `already expired`},
		{[]string{"range", "svc/"}, `^$`},
	}
	for _, tc := range tests {
		if got := cli(tc.args...); !regexp.MustCompile(tc.want).MatchString(got) {
			t.Errorf("kvdbctl %v printed %q, want /%s/", tc.args, got, tc.want)
		}
	}
	if _, errOut, code := runCLI(t, nil, "", "--address", addr, "put", "k", "v", "--lease", "zz"); code == 0 || !strings.Contains(errOut, "invalid lease id") {
		t.Errorf("a bad lease id: exit %d, %q", code, errOut)
	}

	a := newTestApp(t, addr)
	for _, s := range []struct{ line, want string }{
		{"TTL sess", "(integer) 3600\n"},
		{"TTL missing", "(integer) -2\n"},
		{"PUT plain v", "OK\n"},
		{"TTL plain", "(integer) -1\n"},
	} {
		var buf bytes.Buffer
		if _, err := a.execLine(context.Background(), &buf, s.line); err != nil || buf.String() != s.want {
			t.Errorf("%s: %q %v, want %q", s.line, buf.String(), err, s.want)
		}
	}
}

// TestLeaseCommandsOnAFollower: keep-alive and timetolive reach the
// leader, the only node that renews leases and knows how long they have
// left, through a follower given as --address (they failed there with
// FAILED_PRECONDITION).
func TestLeaseCommandsOnAFollower(t *testing.T) {
	cl := clustertest.Start(t, 3)
	follower := cl.Addrs[(cl.Leader()+1)%3]
	cli := func(args ...string) string {
		t.Helper()
		out, errOut, code := runCLI(t, nil, "", append([]string{"--address", follower}, args...)...)
		if code != 0 {
			t.Fatalf("kvdbctl %v on a follower: exit %d: %s", args, code, errOut)
		}
		return out
	}
	m := regexp.MustCompile(`^lease ([0-9a-f]+) granted`).FindStringSubmatch(cli("lease", "grant", "600"))
	if m == nil {
		t.Fatal("grant printed no id")
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"lease", "keep-alive", m[1], "--once"}, `keepalived with TTL\(600\)`},
		{[]string{"lease", "timetolive", m[1]}, `granted with TTL\(600s\), remaining\(\d+s\)`},
	} {
		if got := cli(tc.args...); !regexp.MustCompile(tc.want).MatchString(got) {
			t.Errorf("kvdbctl %v printed %q, want /%s/", tc.args, got, tc.want)
		}
	}
}
