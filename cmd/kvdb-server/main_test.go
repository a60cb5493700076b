package main

import (
	"bytes"
	"os"
	"path/filepath"
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

// TestFlagValuesOutOfRange: numeric flags with no meaning for zero,
// negative or absurd values are refused with exit status 2 and a message
// naming the flag (or the environment variable the value came from) and
// what is allowed; values at the bounds are accepted.
func TestFlagValuesOutOfRange(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want []string // substrings of the error; empty: accepted
	}{
		{args: []string{"-heartbeat-interval=0"}, want: []string{"-heartbeat-interval 0s", "between 10ms and 10s"}},
		{args: []string{"-heartbeat-interval=1us"}, want: []string{"-heartbeat-interval 1µs", "between 10ms and 10s"}},
		{args: []string{"-heartbeat-interval=1m"}, want: []string{"-heartbeat-interval 1m0s", "between 10ms and 10s"}},
		{args: []string{"-heartbeat-interval=10ms"}},
		{args: []string{"-sync-interval=0"}, want: []string{"-sync-interval 0s", "between 1ms and 1m0s"}},
		{args: []string{"-sync-interval=-1s"}, want: []string{"-sync-interval -1s", "between 1ms and 1m0s"}},
		{args: []string{"-sync-interval=1ms"}},
		{args: []string{"-request-timeout=0"}, want: []string{"-request-timeout 0s", "between 10ms and 1h0m0s"}},
		{args: []string{"-request-timeout=1h"}},
		{args: []string{"-snapshot-count=0"}, want: []string{"-snapshot-count 0", "between 1 and 1000000000"}},
		{args: []string{"-snapshot-count=-5"}, want: []string{"-snapshot-count -5", "between 1 and"}},
		{args: []string{"-snapshot-count=1"}},
		{args: []string{"-max-watches-per-stream=0"}, want: []string{"-max-watches-per-stream 0", "between 1 and 1000000"}},
		{args: []string{"-max-watch-streams=-1"}, want: []string{"-max-watch-streams -1", "between 1 and 10000000"}},
		{args: []string{"-max-response-bytes=0"}, want: []string{"-max-response-bytes 0", "between 1 and 67108864"}},
		{args: []string{"-max-response-bytes=64MiB"}},
		{args: []string{"-event-loops=-5"}, want: []string{"-event-loops -5", "-1", "1 to 1024"}},
		{args: []string{"-event-loops=100000"}, want: []string{"-event-loops 100000", "1 to 1024"}},
		{args: []string{"-event-loops=-1"}},
		{args: []string{"-event-loops=0"}},
		{args: []string{"-event-loops=1024"}},
		{args: []string{"-max-ttl=0"}, want: []string{"-max-ttl must be positive"}},
		{args: []string{"-max-leases=0"}, want: []string{"-max-leases must be positive"}},
		{args: []string{"-max-memory=-1"}, want: []string{"-max-memory", "negative"}},
		{args: []string{"-max-memory=0"}}, // no limit
		// A bad value from the environment names the variable.
		{env: map[string]string{"LOG_LEVEL": "loud"}, want: []string{`environment variable LOG_LEVEL "loud"`, "use debug, info, warn or error"}},
		{args: []string{"-log-level=loud"}, want: []string{`-log-level "loud"`}},
		{args: []string{"-log-level=warn"}, env: map[string]string{"LOG_LEVEL": "loud"}},
		{env: map[string]string{"LOG_FORMAT": "xml"}, want: []string{`environment variable LOG_FORMAT "xml"`}},
		{env: map[string]string{"EVICTION_POLICY": "lots"}, want: []string{"environment variable EVICTION_POLICY"}},
		{args: []string{"-eviction-policy=lots"}, want: []string{"-eviction-policy"}},
		{env: map[string]string{"METRICS_ADDRESS": "nohost"}, want: []string{"environment variable METRICS_ADDRESS", "no port"}},
		{args: []string{"-enable-metrics", "-metrics-address", "nohost"}, want: []string{"-metrics-address", "no port"}},
	} {
		_, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, &bytes.Buffer{})
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("%v env %v: refused: %v", tc.args, tc.env, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%v env %v: accepted", tc.args, tc.env)
			continue
		}
		for _, s := range tc.want {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%v env %v: error %q does not say %q", tc.args, tc.env, err, s)
			}
		}
		if strings.Contains(err.Error(), "-max-leases") && tc.args[0] == "-max-ttl=0" {
			t.Errorf("-max-ttl=0 blames -max-leases: %v", err)
		}
	}
	// A refusal is a usage error: exit status 2 (the bad -address keeps a
	// build that accepted the interval from starting a node).
	if _, errOut, code := runServer("-heartbeat-interval=0", "-address=127.0.0.1:x"); code != 2 || !strings.Contains(errOut, "-heartbeat-interval") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

// TestConfiguredClusterID: a single member with state configures no
// cluster id (the data dir's recorded one is used, with nothing to
// compare), a fresh one a random id, and a cluster's members the id
// derived from the members and the token, fresh or not.
func TestConfiguredClusterID(t *testing.T) {
	if id := configuredClusterID([]uint64{1}, "", true); id != 0 {
		t.Errorf("single member with state: %x, want 0", id)
	}
	if a, b := configuredClusterID([]uint64{1}, "", false), configuredClusterID([]uint64{1}, "", false); a == 0 || a == b {
		t.Errorf("fresh single member: %x then %x, want two random ids", a, b)
	}
	ids := []uint64{1, 2, 3}
	for _, hasState := range []bool{false, true} {
		if a, b := configuredClusterID(ids, "t", hasState), newClusterID(ids, "t"); a != b || a == 0 {
			t.Errorf("cluster member (state %v): %x, want %x", hasState, a, b)
		}
	}
}

// TestNodeIDDefault: -node-id defaults to node1 for a standalone node
// only; a raft member must name itself, as the README's table says.
func TestNodeIDDefault(t *testing.T) {
	c, err := parseConfig(nil, func(string) string { return "" }, &bytes.Buffer{})
	if err != nil || c.NodeID != "node1" {
		t.Fatalf("standalone: %+v, %v", c, err)
	}
	_, err = parseConfig([]string{"-enable-raft", "-insecure-peers"}, func(string) string { return "" }, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "-node-id is required") {
		t.Fatalf("raft member without -node-id: %v", err)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "| `-node-id`") {
			if !strings.Contains(line, "Required with `-enable-raft=true`") {
				t.Fatalf("README's -node-id row does not say a raft member needs one: %s", line)
			}
			return
		}
	}
	t.Fatal("README has no -node-id row")
}
