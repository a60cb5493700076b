package main

import (
	"bytes"
	"strings"
	"testing"
)

func runServer(args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	code = run(args, func(string) string { return "" }, &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestVersionFlag(t *testing.T) {
	out, errOut, code := runServer("-version")
	if code != 0 || !strings.HasPrefix(out, "kvdb-server dev (commit unknown, built unknown, go") || errOut != "" {
		t.Errorf("exit %d stdout %q stderr %q", code, out, errOut)
	}
}

// TestBadFlagPrintsOneError: a bad flag prints its error once and where to
// look, not the error twice around the whole flag list.
func TestBadFlagPrintsOneError(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-bogus"}, "kvdb-server: flag provided but not defined: -bogus\n"},
		{[]string{"-max-memory=lots"}, "kvdb-server: invalid value \"lots\" for flag -max-memory: "},
		{[]string{"-log-format=xml"}, "kvdb-server: -log-format \"xml\": use text or json\n"},
		{[]string{"-advertise-client-address=nohost"}, "kvdb-server: -advertise-client-address: address \"nohost\" has no port\n"},
		{[]string{"-enable-pprof"}, "kvdb-server: -enable-pprof needs -metrics-address (profiles are never served on -address)\n"},
	} {
		out, errOut, code := runServer(tc.args...)
		if code != 2 || out != "" {
			t.Errorf("%v: exit %d stdout %q", tc.args, code, out)
		}
		lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
		if len(lines) != 2 || !strings.HasPrefix(errOut, tc.want) || lines[1] != "Run 'kvdb-server -help' for the flags." {
			t.Errorf("%v: stderr\n%s\nwant %q then the -help line", tc.args, errOut, tc.want)
		}
	}
}

func TestHelpListsFlags(t *testing.T) {
	out, errOut, code := runServer("-help")
	if code != 0 || out != "" {
		t.Fatalf("exit %d stdout %q", code, out)
	}
	for _, want := range []string{"Usage of kvdb-server", "-advertise-client-address", "-max-inflight-requests", "-txn-timeout"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("-help output lacks %q", want)
		}
	}
}

func TestAdvertiseClientAddress(t *testing.T) {
	c, err := parseConfig([]string{"-advertise-client-address=127.0.0.1:8082"}, func(string) string { return "" }, &bytes.Buffer{})
	if err != nil || c.AdvertiseClient != "127.0.0.1:8082" {
		t.Fatalf("flag: %+v, %v", c, err)
	}
	env := map[string]string{"ADVERTISE_CLIENT_ADDRESS": "127.0.0.1:9"}
	c, err = parseConfig(nil, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil || c.AdvertiseClient != "127.0.0.1:9" {
		t.Fatalf("env: %+v, %v", c, err)
	}
}

func TestWatchHistoryFlag(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		env        string
		revs, size int64
		bad        bool
	}{
		{revs: 2_000_000, size: 64 << 20},
		{args: []string{"-watch-history=1000"}, revs: 1000, size: 64 << 20},
		{args: []string{"-watch-history=,64MiB"}, revs: 2_000_000, size: 64 << 20},
		{args: []string{"-watch-history=500,1MiB"}, revs: 500, size: 1 << 20},
		{env: "700,2MiB", revs: 700, size: 2 << 20},
		{args: []string{"-watch-history=9"}, env: "700,2MiB", revs: 9, size: 2 << 20},
		{args: []string{"-watch-history=0"}, bad: true},
		{args: []string{"-watch-history=10,1"}, bad: true},
		{args: []string{"-watch-history=x"}, bad: true},
		{args: []string{"-watch-history=,"}, bad: true},
	} {
		env := map[string]string{"WATCH_HISTORY": tc.env}
		c, err := parseConfig(tc.args, func(k string) string { return env[k] }, &bytes.Buffer{})
		if tc.bad {
			if err == nil {
				t.Errorf("%v: accepted", tc.args)
			}
			continue
		}
		if err != nil || c.WatchHistoryRevisions != tc.revs || c.WatchHistoryBytes != tc.size {
			t.Errorf("%v env %q: %d, %d, %v; want %d, %d", tc.args, tc.env, c.WatchHistoryRevisions, c.WatchHistoryBytes, err, tc.revs, tc.size)
		}
	}
}
