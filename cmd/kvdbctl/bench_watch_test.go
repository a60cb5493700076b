package main

import (
	"encoding/json"
	"testing"

	"github.com/kvdb/kvdb/internal/service/servicetest"
)

// TestBenchWatchCommand runs `kvdbctl bench watch` for a moment in each
// mode against a real in-process node: every write's event arrives at
// every watcher that should get it.
func TestBenchWatchCommand(t *testing.T) {
	addr := servicetest.Start(t, nil)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"keys", []string{"--mode", "keys", "--watchers", "20", "--watchers-per-stream", "4"}},
		{"prefix", []string{"--mode", "prefix", "--watchers", "3"}},
		{"idle with a slow watcher", []string{"--mode", "idle", "--watchers", "10", "--slow-watchers", "1", "--rate", "0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--address", addr, "bench", "watch", "--duration", "300ms", "--rate", "300", "--json", "--server-pid", "-1"}, tc.args...)
			out, errOut, code := runCLI(t, nil, "", args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var res struct {
				Writes, WriteErrors, Events, ExpectedEvents int64
			}
			var raw map[string]any
			if err := json.Unmarshal([]byte(out), &raw); err != nil {
				t.Fatalf("not one JSON object: %v\n%s", err, out)
			}
			res.Writes, res.WriteErrors = int64(raw["writes"].(float64)), int64(raw["write_errors"].(float64))
			res.Events, res.ExpectedEvents = int64(raw["events"].(float64)), int64(raw["expected_events"].(float64))
			if res.Writes == 0 || res.WriteErrors != 0 || res.Events != res.ExpectedEvents {
				t.Errorf("result: %s", out)
			}
		})
	}
}
