package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/kvdb/kvdb/internal/bench"
	"github.com/kvdb/kvdb/internal/service/servicetest"
)

// TestBenchCommand runs `kvdbctl bench` for a moment against a real
// in-process node, over both transports, in JSON and text.
func TestBenchCommand(t *testing.T) {
	addr := servicetest.Start(t, nil)
	tests := []struct {
		name string
		args []string
	}{
		{"grpc put json", []string{"bench", "--op", "put", "--total", "300", "--json"}},
		{"binary get pipelined json", []string{"bench", "--protocol", "binary", "--op", "get", "--pipeline", "8", "--keys", "50", "--total", "300", "--json"}},
		{"binary mixed serializable", []string{"bench", "--protocol", "binary", "--op", "mixed", "--consistency", "s", "--duration", "300ms", "-o", "json"}},
		{"batch", []string{"bench", "--op", "batch", "--batch-size", "10", "--total", "20", "--json"}},
		{"txn", []string{"bench", "--op", "txn", "--keys", "20", "--total", "50", "--json"}},
		// The preload's batches fit the node's default request limit.
		{"get with 1 MiB values", []string{"bench", "--op", "get", "--value-size", "1048576", "--keys", "12", "--total", "12", "--json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCLI(t, nil, "", append([]string{"--address", addr}, tt.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var res map[string]any
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("not one JSON object: %v\n%s", err, out)
			}
			if res["errors"] != 0.0 || res["ops_per_sec"].(float64) <= 0 || res["p50_us"].(float64) <= 0 {
				t.Errorf("result: %s", out)
			}
			if _, ok := res["errors_by_code"].(map[string]any); !ok {
				t.Errorf("errors_by_code missing: %s", out)
			}
			// No progress bar when piped: stderr is only the note on the
			// keys left behind.
			if !strings.HasPrefix(errOut, "kvdbctl bench: left its keys ") || strings.Count(errOut, "\n") != 1 || strings.Contains(errOut, "\r") {
				t.Errorf("stderr: %q", errOut)
			}
		})
	}

	t.Run("text", func(t *testing.T) {
		out, errOut, code := runCLI(t, nil, "", "--address", addr, "bench", "--op", "delete", "--total", "100", "--keys", "100")
		if code != 0 || !strings.Contains(out, "DELETE: 100 ops") || !strings.Contains(out, "p99=") || !strings.Contains(out, "errors: 0") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("bad op", func(t *testing.T) {
		_, errOut, code := runCLI(t, nil, "", "--address", addr, "bench", "--op", "scan")
		if code != 1 || !strings.Contains(errOut, "unknown op") {
			t.Fatalf("exit %d: %s", code, errOut)
		}
	})
	t.Run("bad counts", func(t *testing.T) {
		for _, args := range [][]string{{"--total", "0"}, {"--total", "-5"}, {"--op", "batch", "--batch-size", "0", "--total", "5"}, {"--duration", "-1s"}} {
			_, errOut, code := runCLI(t, nil, "", append([]string{"--address", addr, "bench"}, args...)...)
			if code != 1 || !strings.Contains(errOut, "must be positive") {
				t.Fatalf("%v: exit %d: %s", args, code, errOut)
			}
		}
	})
	t.Run("every request fails", func(t *testing.T) {
		// Values over the node's -max-value-size: every put is refused.
		out, errOut, code := runCLI(t, nil, "", "--address", addr, "bench", "--op", "put", "--value-size", "2000000", "--total", "5", "--json")
		if code != 1 || !strings.Contains(errOut, "every request failed (5): INVALID_ARGUMENT 5") || !strings.Contains(out, `"errors": 5`) {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		if strings.Contains(errOut, "left its keys") {
			t.Errorf("says it left keys though none was written: %s", errOut)
		}
	})
	t.Run("repl BENCHMARK", func(t *testing.T) {
		out, errOut, code := runCLI(t, nil, "BENCHMARK 200 bk_ 64\nGET bk_00000007\n", "--address", addr)
		if code != 0 || !strings.Contains(out, "PUT: 200 ops") || !strings.Contains(out, "GET: 200 ops") || !strings.Contains(out, "ghijklm") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		if !strings.Contains(out, "(left 200 keys bk_00000000 … bk_00000199 in the store; add CLEANUP to delete them after the run)\n") {
			t.Errorf("BENCHMARK does not say it left its keys:\n%s", out)
		}
	})
}

// TestBenchCleanup: --cleanup (and the shell's CLEANUP) delete exactly the
// keys the run wrote, and nothing else under the prefix.
func TestBenchCleanup(t *testing.T) {
	addr := servicetest.Start(t, nil)
	count := func(prefix string) string {
		t.Helper()
		out, errOut, code := runCLI(t, nil, "", "--address", addr, "range", prefix, "--count-only")
		if code != 0 {
			t.Fatalf("range: exit %d: %s", code, errOut)
		}
		return strings.TrimSpace(out)
	}
	if _, errOut, code := runCLI(t, nil, "", "--address", addr, "put", "cl/mine", "keep"); code != 0 {
		t.Fatal(errOut)
	}
	out, errOut, code := runCLI(t, nil, "", "--address", addr, "bench", "--op", "put", "--key-prefix", "cl/", "--keys", "1500", "--total", "3000", "--json", "--cleanup")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if !strings.HasPrefix(errOut, "kvdbctl bench: deleted ") || !strings.Contains(errOut, " keys cl/00000000 … cl/00001499\n") {
		t.Errorf("stderr: %q", errOut)
	}
	if got := count("cl/"); got != "1" {
		t.Errorf("after --cleanup %s keys under cl/, want 1 (cl/mine)", got)
	}

	out, errOut, code = runCLI(t, nil, "BENCHMARK 300 sh_ 16 CLEANUP\n", "--address", addr)
	if code != 0 || !strings.Contains(out, "(deleted 300 keys sh_00000000 … sh_00000299)\n") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if got := count("sh_"); got != "0" {
		t.Errorf("after CLEANUP %s keys under sh_", got)
	}
}

// TestBenchValueSizeBound: a value size over the largest value any server
// can store is refused as a bad flag, by `kvdbctl bench` and by the shell's
// BENCHMARK, before anything is allocated or sent.
func TestBenchValueSizeBound(t *testing.T) {
	addr := servicetest.Start(t, nil)
	tooLarge := strconv.Itoa(bench.MaxValueSize + 1)
	tests := []struct {
		name     string
		stdin    string
		args     []string
		wantCode int
		wantErr  string
		wantOut  string
	}{
		{name: "bench", args: []string{"bench", "--op", "put", "--total", "5", "--value-size", tooLarge},
			wantCode: 1, wantErr: "Error: value size 67108865 is over 67108864 bytes (64 MiB), the largest value a KVDB server can store\nRun 'kvdbctl --help' for usage."},
		{name: "bench get", args: []string{"bench", "--op", "get", "--total", "5", "--keys", "5", "--value-size", tooLarge},
			wantCode: 1, wantErr: "the largest value a KVDB server can store"},
		{name: "bench batch", args: []string{"bench", "--op", "batch", "--total", "5", "--value-size", "1048576"},
			wantCode: 1, wantErr: "a batch of 100 values of 1048576 bytes is over 67108864 bytes"},
		{name: "shell BENCHMARK", stdin: "BENCHMARK 10 x " + tooLarge + "\n",
			wantCode: 1, wantOut: "(error) invalid valuesize \"67108865\": value size 67108865 is over 67108864 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCLI(t, nil, tt.stdin, append([]string{"--address", addr}, tt.args...)...)
			if code != tt.wantCode || !strings.Contains(errOut, tt.wantErr) || !strings.Contains(out, tt.wantOut) {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, errOut)
			}
			if strings.Contains(out+errOut, "INVALID_ARGUMENT") || strings.Contains(out, "ops") {
				t.Errorf("requests were sent:\n%s%s", out, errOut)
			}
		})
	}
	// Nothing was written.
	for _, prefix := range []string{"bench/", "x"} {
		out, errOut, code := runCLI(t, nil, "", "--address", addr, "range", prefix, "--count-only")
		if code != 0 || strings.TrimSpace(out) != "0" {
			t.Errorf("keys under %s: exit %d %q %s", prefix, code, out, errOut)
		}
	}
}
