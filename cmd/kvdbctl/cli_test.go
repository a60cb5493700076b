package main

import (
	"encoding/json"
	"io"
	"maps"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

func TestCommands(t *testing.T) {
	tests := []struct {
		name       string
		seed       map[string]string
		args       []string
		wantOut    string
		wantErr    string
		wantCode   int
		wantValues map[string]string // "" value with ok=false is spelled "<nil>"
	}{
		{name: "get text", seed: map[string]string{"a": "hello world"}, args: []string{"get", "a"}, wantOut: "hello world\n"},
		{name: "get raw bytes", seed: map[string]string{"b": "x\x00y\n"}, args: []string{"get", "b"}, wantOut: "x\x00y\n\n"},
		{name: "get json", seed: map[string]string{"a": "1"}, args: []string{"get", "a", "-o", "json"},
			wantOut: "{\n  \"key\": \"a\",\n  \"value\": \"1\",\n  \"create_revision\": 1,\n  \"mod_revision\": 1,\n  \"version\": 1\n}\n"},
		{name: "get missing", args: []string{"get", "nope"}, wantErr: "key not found\n", wantCode: 1},
		{name: "get missing json", args: []string{"-o", "json", "get", "nope"}, wantErr: "key not found\n", wantCode: 1},
		{name: "put", args: []string{"put", "k", "v w"}, wantOut: "OK\n", wantValues: map[string]string{"k": "v w"}},
		{name: "put prev-kv", seed: map[string]string{"k": "old"}, args: []string{"put", "--prev-kv", "k", "new"},
			wantOut: "OK\nold\n", wantValues: map[string]string{"k": "new"}},
		{name: "put json", seed: map[string]string{"x": "1"}, args: []string{"put", "k", "v", "-o", "json"}, wantOut: "{\n  \"revision\": 2\n}\n"},
		{name: "put json prev-kv", seed: map[string]string{"k": "old"}, args: []string{"put", "k", "v", "--prev-kv", "--output=json"},
			wantOut: "{\n  \"revision\": 2,\n  \"prev_kv\": {\n    \"key\": \"k\",\n    \"value\": \"old\",\n    \"create_revision\": 1,\n    \"mod_revision\": 1,\n    \"version\": 1\n  }\n}\n"},
		{name: "put dash value", args: []string{"put", "k", "--", "-1"}, wantOut: "OK\n", wantValues: map[string]string{"k": "-1"}},
		{name: "put empty key", args: []string{"put", "", "v"}, wantErr: "Error: key must not be empty (InvalidArgument)\n", wantCode: 1},
		{name: "delete one", seed: map[string]string{"a": "1", "ab": "2"}, args: []string{"delete", "a"}, wantOut: "1\n",
			wantValues: map[string]string{"a": "<nil>", "ab": "2"}},
		{name: "delete missing", args: []string{"delete", "a"}, wantOut: "0\n"},
		{name: "delete prefix", seed: map[string]string{"a": "1", "ab": "2", "b": "3"}, args: []string{"delete", "--prefix", "a"}, wantOut: "2\n",
			wantValues: map[string]string{"a": "<nil>", "ab": "<nil>", "b": "3"}},
		{name: "delete range", seed: map[string]string{"a": "1", "b": "2", "c": "3"}, args: []string{"delete", "--from", "a", "--to", "c"}, wantOut: "2\n",
			wantValues: map[string]string{"c": "3"}},
		{name: "delete from to end", seed: map[string]string{"a": "1", "b": "2", "c": "3"}, args: []string{"delete", "--from", "b"}, wantOut: "2\n",
			wantValues: map[string]string{"a": "1"}},
		{name: "delete json", seed: map[string]string{"a": "1"}, args: []string{"delete", "a", "-o", "json"}, wantOut: "{\n  \"deleted\": 1,\n  \"revision\": 2\n}\n"},
		{name: "delete no key", args: []string{"delete"}, wantErr: "delete needs KEY", wantCode: 1},
		{name: "range prefix", seed: map[string]string{"u:1": "a", "u:2": "b", "v": "c"}, args: []string{"range", "u:"}, wantOut: "u:1\na\nu:2\nb\n"},
		{name: "range from to", seed: map[string]string{"a": "1", "b": "2", "c": "3"}, args: []string{"range", "--from", "a", "--to", "c"}, wantOut: "a\n1\nb\n2\n"},
		{name: "range from to end", seed: map[string]string{"a": "1", "b": "2", "c": "3"}, args: []string{"range", "--from", "b"}, wantOut: "b\n2\nc\n3\n"},
		{name: "range all", seed: map[string]string{"a": "1", "b": "2"}, args: []string{"range"}, wantOut: "a\n1\nb\n2\n"},
		{name: "range limit keys-only", seed: map[string]string{"a": "1", "b": "2", "c": "3"}, args: []string{"range", "--from", "a", "--limit", "2", "--keys-only"}, wantOut: "a\nb\n",
			wantErr: "… 1 more key (raise --limit to see them)\n"},
		{name: "range count-only", seed: map[string]string{"a": "1", "ab": "2", "b": "3"}, args: []string{"range", "a", "--count-only"}, wantOut: "2\n"},
		{name: "range json", seed: map[string]string{"a": "1", "b": "2"}, args: []string{"range", "--from", "a", "--limit", "1", "-o", "json"},
			wantOut: "{\n  \"kvs\": [\n    {\n      \"key\": \"a\",\n      \"value\": \"1\",\n      \"create_revision\": 1,\n      \"mod_revision\": 1,\n      \"version\": 1\n    }\n  ],\n  \"more\": true,\n  \"count\": 2\n}\n"},
		{name: "range json empty", args: []string{"range", "zz", "-o", "json"}, wantOut: "{\n  \"kvs\": [],\n  \"more\": false,\n  \"count\": 0\n}\n"},
		{name: "range prefix and from", args: []string{"range", "a", "--from", "b"}, wantErr: "--from cannot be combined", wantCode: 1},
		{name: "batch", seed: map[string]string{"k3": "x"}, args: []string{"batch", "put", "k1", "v1", "PUT", "k2", "v2", "delete", "k3"},
			wantOut: "OK (2 puts, 1 deleted)\n", wantValues: map[string]string{"k1": "v1", "k2": "v2", "k3": "<nil>"}},
		{name: "batch json", args: []string{"batch", "put", "k1", "v1", "-o", "json"}, wantOut: "{\n  \"puts\": 1,\n  \"deleted\": 0,\n  \"revision\": 1\n}\n"},
		{name: "batch bad op", args: []string{"batch", "put", "k1"}, wantErr: "put needs KEY and VALUE", wantCode: 1},
		{name: "batch unknown op", args: []string{"batch", "get", "k1"}, wantErr: `unknown operation "get"`, wantCode: 1},
		{name: "status text", args: []string{"status"}, wantOut: "node_id=node1 leader=node1 is_leader=true term=2 applied_index=10 commit_index=10 state=leader\n"},
		{name: "unknown subcommand", args: []string{"frobnicate"}, wantErr: `unknown command "frobnicate"`, wantCode: 1},
		{name: "bad output", args: []string{"-o", "yaml", "status"}, wantErr: "invalid --output \"yaml\"", wantCode: 1},
		{name: "bad consistency", args: []string{"--consistency", "x", "get", "a"}, wantErr: "invalid --consistency", wantCode: 1},
		{name: "unknown flag", args: []string{"get", "--bogus", "a"}, wantErr: "Run 'kvdbctl --help' for usage.", wantCode: 1},
		{name: "wrong arg count", args: []string{"get"}, wantErr: "accepts 1 arg(s)", wantCode: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, addr := startServer(t)
			for _, k := range sortedKeys(tt.seed) {
				fs.set(k, tt.seed[k])
			}
			out, errOut, code := runCLI(t, nil, "", append([]string{"--address", addr}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, errOut)
			}
			if out != tt.wantOut {
				t.Errorf("stdout = %q, want %q", out, tt.wantOut)
			}
			if tt.wantErr == "" && errOut != "" {
				t.Errorf("unexpected stderr %q", errOut)
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr = %q, want it to contain %q", errOut, tt.wantErr)
			}
			for k, want := range tt.wantValues {
				got, ok := fs.value(k)
				if !ok {
					got = "<nil>"
				}
				if got != want {
					t.Errorf("stored %q = %q, want %q", k, got, want)
				}
			}
		})
	}
}

// sortedKeys seeds in a fixed order so revisions are deterministic.
func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

// contractStatsShape is the STATS document of the README's example (the
// contract in docs/monitoring.md), used as the reference shape: same sections, same field names, same JSON types.
const contractStatsShape = `{
  "storage": {"keys": 10000, "memory_usage": 52428800, "max_memory": 1073741824, "version": 15847},
  "network": {"active_connections": 12, "total_requests": 98765, "address": ":8080"},
  "raft": {"node_id": "node1", "state": 2, "current_term": 5, "leader_id": "node1", "log_length": 1543, "commit_index": 1543},
  "metrics": {"uptime_seconds": 3600.5, "operations": {"GET": {"count": 45231, "ops_per_sec": 12.56, "avg_latency": 45, "p95_latency": 89, "p99_latency": 145}}}
}`

// withTxnSection adds the additive "transactions" section, the readable
// fields raft.state_name and metrics.operations.*.*_us, and
// storage.evicted_keys and eviction_policy to the contract's shape: every
// field of its four sections stays as it is.
func withTxnSection(shape any) any {
	m := shape.(map[string]any)
	m["transactions"] = map[string]any{"commits": "number", "aborts": "number", "active": "number", "expired": "number"}
	m["raft"].(map[string]any)["state_name"] = "string"
	m["storage"].(map[string]any)["evicted_keys"] = "number"
	m["storage"].(map[string]any)["eviction_policy"] = "string"
	m["storage"].(map[string]any)["expired_keys"] = "number"
	for _, op := range m["metrics"].(map[string]any)["operations"].(map[string]any) {
		for _, f := range []string{"avg_latency_us", "p95_latency_us", "p99_latency_us"} {
			op.(map[string]any)[f] = "number"
		}
	}
	return m
}

// shapeOf replaces every leaf of a decoded JSON document by its type name,
// so two documents can be compared by shape only.
func shapeOf(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = shapeOf(e)
		}
		return out
	case []any:
		return "array"
	case float64:
		return "number"
	case string:
		return "string"
	case bool:
		return "bool"
	default:
		return "null"
	}
}

func TestStatsMatchesContractShape(t *testing.T) {
	var want any
	if err := json.Unmarshal([]byte(contractStatsShape), &want); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, out string) {
		t.Helper()
		var got map[string]any
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("stats output is not JSON: %v\n%s", err, out)
		}
		// The fake reports PUT as well; the README's example only shows GET. Compare
		// the GET entry and check PUT has the same shape.
		ops := got["metrics"].(map[string]any)["operations"].(map[string]any)
		if !reflect.DeepEqual(shapeOf(ops["PUT"]), shapeOf(ops["GET"])) {
			t.Errorf("PUT stats shape %v differs from GET %v", shapeOf(ops["PUT"]), shapeOf(ops["GET"]))
		}
		delete(ops, "PUT")
		if g, w := shapeOf(got), withTxnSection(shapeOf(want)); !reflect.DeepEqual(g, w) {
			t.Errorf("stats shape\n got %v\nwant %v", g, w)
		}
		if !strings.Contains(out, "\n  \"storage\": {\n") {
			t.Errorf("stats output is not indented:\n%s", out)
		}
		if ops["GET"].(map[string]any)["p99_latency"] != 145.0 || got["metrics"].(map[string]any)["uptime_seconds"] != 3600.5 {
			t.Errorf("stats values not carried over: %s", out)
		}
	}
	fs, addr := startServer(t)
	fs.set("a", "1")
	// -o text does not matter: the shape is the interface.
	for _, args := range [][]string{{"stats"}, {"stats", "-o", "json"}, {"-o", "text", "stats"}} {
		out, errOut, code := runCLI(t, nil, "", append([]string{"--address", addr}, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		check(t, out)
	}
}

func TestStatsToJSONNilSections(t *testing.T) {
	b, err := json.Marshal(StatsToJSON(&kvdbv1.StatsResponse{}))
	if err != nil {
		t.Fatal(err)
	}
	var got, want any
	_ = json.Unmarshal(b, &got)
	_ = json.Unmarshal([]byte(contractStatsShape), &want)
	// Without any data every field is still there; operations is {} not null.
	w := withTxnSection(shapeOf(want)).(map[string]any)
	w["metrics"].(map[string]any)["operations"] = map[string]any{}
	if g := shapeOf(got); !reflect.DeepEqual(g, any(w)) {
		t.Errorf("empty stats shape\n got %v\nwant %v", g, w)
	}
}

func TestStatusJSON(t *testing.T) {
	fs, addr := startServer(t)
	fs.set("a", "1")
	out, errOut, code := runCLI(t, nil, "", "--address", addr, "status", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	want := map[string]any{
		"node_id": "node1", "is_leader": true, "leader_id": "node1", "term": 2.0,
		"applied_index": 10.0, "commit_index": 10.0, "raft_state": "leader",
		"member_id": 42.0, "revision": 1.0, "keys": 1.0, "memory_usage": 1234.0,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestServerErrorFormat(t *testing.T) {
	fs, addr := startServer(t)
	// Unavailable on a live connection is the server talking (no leader),
	// not an unreachable server.
	fs.setFail(status.Error(codes.Unavailable, "no leader"))
	_, errOut, code := runCLI(t, nil, "", "--address", addr, "put", "a", "1")
	if code != 1 || errOut != "Error: no leader (Unavailable)\n" {
		t.Errorf("got exit %d stderr %q", code, errOut)
	}
	fs.setFail(status.Error(codes.PermissionDenied, "read only"))
	_, errOut, code = runCLI(t, nil, "", "--address", addr, "get", "a")
	if code != 1 || errOut != "Error: read only (PermissionDenied)\n" {
		t.Errorf("got exit %d stderr %q", code, errOut)
	}
}

func TestUnreachableServer(t *testing.T) {
	addr := closedAddress(t)
	_, errOut, code := runCLI(t, nil, "", "--address", addr, "--timeout", "2s", "get", "a")
	if code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	if want := "Error: cannot reach KVDB server at " + addr + ": "; !strings.HasPrefix(errOut, want) {
		t.Errorf("stderr = %q, want prefix %q", errOut, want)
	}
}

// TestNotAGRPCPort: a port that answers in another protocol (here a Redis
// error line, as a node's -resp-address does) gets an explanation, not
// only gRPC's words about HTTP/2 frames.
func TestNotAGRPCPort(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			// As a Redis-protocol port does: answer, keep the connection
			// open and read on until the client hangs up.
			go func() {
				defer c.Close()
				_, _ = c.Write([]byte("-ERR unknown command 'PRI', with args beginning with: '*' 'HTTP/2.0'\r\n"))
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	_, errOut, code := runCLI(t, nil, "", "--address", lis.Addr().String(), "--timeout", "2s", "get", "a")
	if code != 1 || !strings.Contains(errOut, "does not speak gRPC") {
		t.Errorf("got exit %d stderr %q", code, errOut)
	}
}

func TestConsistencyFlag(t *testing.T) {
	tests := []struct {
		flag string
		want kvdbv1.Consistency
	}{
		{"", kvdbv1.Consistency_CONSISTENCY_LINEARIZABLE},
		{"l", kvdbv1.Consistency_CONSISTENCY_LINEARIZABLE},
		{"s", kvdbv1.Consistency_CONSISTENCY_SERIALIZABLE},
		{"serializable", kvdbv1.Consistency_CONSISTENCY_SERIALIZABLE},
	}
	for _, tt := range tests {
		t.Run(tt.flag, func(t *testing.T) {
			fs, addr := startServer(t)
			fs.set("a", "1")
			args := []string{"--address", addr}
			if tt.flag != "" {
				args = append(args, "-consistency", tt.flag)
			}
			for _, cmd := range [][]string{{"get", "a"}, {"range", "a"}} {
				if _, errOut, code := runCLI(t, nil, "", append(args, cmd...)...); code != 0 {
					t.Fatalf("%v: exit %d: %s", cmd, code, errOut)
				}
				if got := fs.consistency(); got != tt.want {
					t.Errorf("%v sent %v, want %v", cmd, got, tt.want)
				}
			}
		})
	}
}
