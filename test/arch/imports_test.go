// Package arch checks the import rules docs/architecture.md sets out: each
// layer depends only on the layers below it, the operation layer and the
// state machine hold no transport code, and the protocol adapters never
// reach into each other.
package arch

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/kvdb/kvdb"

// rules lists, for each guarded package tree, the module packages it may
// depend on (transitively) besides its own subpackages.
var rules = map[string][]string{
	"internal/engine":   nil,
	"internal/raftnode": {"gen/kvdb/raft/v1"},
	"internal/wire":     nil,
	"internal/resp":     nil,
	"internal/command":  {"internal/engine", "gen/kvdb/raft/v1"},
	"internal/auth":     {"gen/kvdb/raft/v1"},
	"internal/fsm":      {"internal/auth", "internal/command", "internal/engine", "internal/raftnode", "gen/kvdb/raft/v1"},
	"internal/watch":    {"internal/engine"},
	"internal/core":     {"internal/auth", "internal/command", "internal/engine", "internal/fsm", "internal/raftnode", "internal/watch", "gen/kvdb/raft/v1"},
	"client":            {"internal/wire", "gen/kvdb/v1"},
}

// violations returns the module packages in deps that pkg may not use.
func violations(pkg string, allow, deps []string) []string {
	var bad []string
	for _, dep := range deps {
		rel, ok := strings.CutPrefix(dep, module+"/")
		if !ok || rel == pkg || strings.HasPrefix(rel, pkg+"/") {
			continue
		}
		permitted := false
		for _, a := range allow {
			if rel == a || strings.HasPrefix(rel, a+"/") {
				permitted = true
			}
		}
		if !permitted {
			bad = append(bad, rel)
		}
	}
	return bad
}

func TestImportGraph(t *testing.T) {
	for pkg, allow := range rules {
		cmd := exec.Command("go", "list", "-deps", "./"+pkg+"/...")
		cmd.Dir = "../.."
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		if bad := violations(pkg, allow, strings.Fields(string(out))); len(bad) > 0 {
			t.Errorf("%s depends on %v, which docs/architecture.md forbids", pkg, bad)
		}
	}
}

// TestRaftnodeHasNoMetricsLibrary: raftnode reports through its Metrics
// interface; only the service knows Prometheus.
func TestRaftnodeHasNoMetricsLibrary(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./internal/raftnode/...", "./internal/engine/...")
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, "prometheus") {
			t.Errorf("raftnode or engine depends on %s", dep)
		}
	}
}

func TestViolationsDetects(t *testing.T) {
	deps := []string{"fmt", module + "/internal/engine", module + "/internal/raftnode/wal", module + "/internal/service", module + "/gen/kvdb/raft/v1"}
	got := violations("internal/raftnode", []string{"gen/kvdb/raft/v1"}, deps)
	if strings.Join(got, ",") != "internal/engine,internal/service" {
		t.Fatalf("violations = %v", got)
	}
}
