package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// newTestApp builds an app wired to addr the way run() would after flag
// parsing, for driving runScript and execLine directly.
func newTestApp(t *testing.T, addr string) *app {
	t.Helper()
	a := &app{address: addr, timeout: defaultTimeout, output: outputText, getenv: func(string) string { return "" }}
	t.Cleanup(a.close)
	return a
}

func TestREPLScript(t *testing.T) {
	fs, addr := startServer(t)
	a := newTestApp(t, addr)
	script := strings.Join([]string{
		`PUT user:1 {"name":"John","age":30}`,
		`GET user:1`,
		``,
		`   `,
		`get user:2`,
		`Put user:2   two  words `,
		`gEt user:2`,
		`DELETE user:1`,
		`GET user:1`,
		`BATCH PUT k1 v1 put k2 v2 DELETE user:2`,
		`RANGE k`,
		`RANGE k 1`,
		`RANGE nothing`,
		`STATUS`,
		`frob x`,
		`HELP`,
	}, "\n") + "\n"
	var out bytes.Buffer
	err := a.runScript(context.Background(), strings.NewReader(script), &out)
	var se *scriptError
	if !errors.As(err, &se) || se.failed != 1 {
		t.Fatalf("runScript error = %v, want one failed command", err)
	}
	want := strings.Join([]string{
		`OK`,
		`{"name":"John","age":30}`,
		`(nil)`,
		`OK`,
		`two  words `,
		`1`,
		`(nil)`,
		`OK (2 puts, 1 deleted)`,
		"k1", "v1", "k2", "v2",
		"k1", "v1",
		`… 1 more key (RANGE prefix limit)`,
		`(empty)`,
		`node_id=node1 leader=node1 is_leader=true term=2 applied_index=10 commit_index=10 state=leader`,
		`(error) unknown command "frob" (type HELP)`,
	}, "\n") + "\n" + helpText
	if got := out.String(); got != want {
		t.Errorf("output mismatch\n got:\n%s\nwant:\n%s", got, want)
	}
	// The JSON value was stored verbatim, spaces and all.
	if v, _ := fs.value("user:2"); v != "" {
		t.Errorf("user:2 should be deleted by the batch, is %q", v)
	}
	if v, ok := fs.value("k2"); !ok || v != "v2" {
		t.Errorf("k2 = %q, %v", v, ok)
	}
}

func TestREPLPutKeepsValueVerbatim(t *testing.T) {
	fs, addr := startServer(t)
	a := newTestApp(t, addr)
	var out bytes.Buffer
	script := "PUT user:1 {\"name\": \"John Smith\", \"age\": 30}\r\nPUT tab\tvalue with\ttab\n"
	if err := a.runScript(context.Background(), strings.NewReader(script), &out); err != nil {
		t.Fatalf("runScript: %v (output %q)", err, out.String())
	}
	for k, want := range map[string]string{
		"user:1": `{"name": "John Smith", "age": 30}`,
		"tab":    "value with\ttab",
	} {
		if got, _ := fs.value(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

func TestREPLStatsJSON(t *testing.T) {
	_, addr := startServer(t)
	a := newTestApp(t, addr)
	var out bytes.Buffer
	if err := a.runScript(context.Background(), strings.NewReader("stats\n"), &out); err != nil {
		t.Fatalf("runScript: %v", err)
	}
	var got StatsJSON
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("STATS output does not decode into the STATS contract's shape: %v", err)
	}
	want := StatsJSON{
		Storage: StorageJSON{Keys: 0, MemoryUsage: 52428800, MaxMemory: 1073741824, Version: 0},
		Network: NetworkJSON{ActiveConnections: 12, TotalRequests: 98765, Address: ":8080"},
		Raft:    RaftJSON{NodeID: "node1", State: 2, StateName: "leader", CurrentTerm: 5, LeaderID: "node1", LogLength: 1543, CommitIndex: 1543},
		Metrics: MetricsJSON{UptimeSeconds: 3600.5, Operations: map[string]OperationStatJSON{
			"GET": {Count: 45231, OpsPerSec: 12.56, AvgLatency: 45, P95Latency: 89, P99Latency: 145, AvgLatencyUs: 45, P95LatencyUs: 89, P99LatencyUs: 145},
			"PUT": {Count: 10, OpsPerSec: 0.5, AvgLatency: 60, P95Latency: 90, P99Latency: 120, AvgLatencyUs: 60, P95LatencyUs: 90, P99LatencyUs: 120},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
}

func TestREPLCommandErrors(t *testing.T) {
	_, addr := startServer(t)
	tests := []struct {
		line string
		want string
	}{
		{"GET", "(error) usage: GET key\n"},
		{"GET a b", "(error) usage: GET key\n"},
		{"PUT onlykey", "(error) usage: PUT key value\n"},
		{"DELETE", "(error) usage: DELETE key\n"},
		{"RANGE a notanumber", "(error) invalid limit \"notanumber\": want a non-negative integer\n"},
		{"BATCH PUT k", "(error) batch op 1: put needs KEY and VALUE; usage: BATCH PUT k1 v1 PUT k2 v2 DELETE k3\n"},
		{"BATCH", "(error) empty batch: want put KEY VALUE or delete KEY; usage: BATCH PUT k1 v1 PUT k2 v2 DELETE k3\n"},
		{"STATS now", "(error) usage: STATS\n"},
		{"COMMIT", "(error) COMMIT without a transaction: BEGIN one first\n"},
		{"rollback", "(error) ROLLBACK without a transaction: BEGIN one first\n"},
		{"BEGIN a b", "(error) usage: BEGIN [txid]\n"},
		{"xyzzy", "(error) unknown command \"xyzzy\" (type HELP)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			a := newTestApp(t, addr)
			var out bytes.Buffer
			err := a.runScript(context.Background(), strings.NewReader(tt.line+"\n"), &out)
			var se *scriptError
			if !errors.As(err, &se) || se.failed != 1 || se.total != 1 {
				t.Errorf("runScript error = %v, want 1 of 1 failed", err)
			}
			if out.String() != tt.want {
				t.Errorf("output %q, want %q", out.String(), tt.want)
			}
		})
	}
}

func TestREPLQuitStopsReading(t *testing.T) {
	fs, addr := startServer(t)
	for _, quit := range []string{"QUIT", "exit", "Quit"} {
		a := newTestApp(t, addr)
		var out bytes.Buffer
		if err := a.runScript(context.Background(), strings.NewReader("PUT a 1\n"+quit+"\nPUT b 2\n"), &out); err != nil {
			t.Fatalf("runScript: %v", err)
		}
		if out.String() != "OK\n" {
			t.Errorf("%s: output %q", quit, out.String())
		}
		if _, ok := fs.value("b"); ok {
			t.Errorf("%s: command after it was run", quit)
		}
	}
}

func TestREPLExitStatus(t *testing.T) {
	_, addr := startServer(t)
	tests := []struct {
		name     string
		stdin    string
		wantOut  string
		wantErr  string
		wantCode int
	}{
		{"all ok", "PUT a 1\nGET a\n", "OK\n1\n", "", 0},
		{"no trailing newline", "PUT a 1\nGET a", "OK\n1\n", "", 0},
		{"empty input", "", "", "", 0},
		{"missing key is not a failure", "GET nope\n", "(nil)\n", "", 0},
		{"a failure is reported at EOF", "BOGUS\nPUT a 1\n", "(error) unknown command \"BOGUS\" (type HELP)\nOK\n", "Error: 1 of 2 commands failed\n", 1},
		{"failure before QUIT still counts", "BOGUS\nQUIT\nPUT a 1\n", "(error) unknown command \"BOGUS\" (type HELP)\n", "Error: 1 of 2 commands failed\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCLI(t, nil, tt.stdin, "--address", addr)
			if code != tt.wantCode || out != tt.wantOut || errOut != tt.wantErr {
				t.Errorf("got exit %d stdout %q stderr %q\nwant exit %d stdout %q stderr %q",
					code, out, errOut, tt.wantCode, tt.wantOut, tt.wantErr)
			}
		})
	}
}

func TestREPLUnreachableServer(t *testing.T) {
	addr := closedAddress(t)
	out, _, code := runCLI(t, nil, "GET a\nPUT a 1\n", "--address", addr, "--timeout", "2s")
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want two error lines, got %q", out)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "(error) cannot reach KVDB server at "+addr+": ") {
			t.Errorf("line %q does not name the address", l)
		}
	}
}

func TestREPLHonoursJSONOutput(t *testing.T) {
	fs, addr := startServer(t)
	fs.set("a", "1")
	out, errOut, code := runCLI(t, nil, "GET a\nGET missing\n", "--address", addr, "-o", "json")
	want := "{\n  \"key\": \"a\",\n  \"value\": \"1\",\n  \"create_revision\": 1,\n  \"mod_revision\": 1,\n  \"version\": 1\n}\n(nil)\n"
	if code != 0 || out != want {
		t.Errorf("exit %d stdout %q stderr %q", code, out, errOut)
	}
}

func TestNextToken(t *testing.T) {
	tests := []struct{ in, tok, rest string }{
		{"", "", ""},
		{"GET", "GET", ""},
		{"  GET  key ", "GET", "  key "},
		{"PUT\tk v", "PUT", "\tk v"},
	}
	for _, tt := range tests {
		if tok, rest := nextToken(tt.in); tok != tt.tok || rest != tt.rest {
			t.Errorf("nextToken(%q) = %q, %q; want %q, %q", tt.in, tok, rest, tt.tok, tt.rest)
		}
	}
}
