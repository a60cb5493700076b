package arch

import (
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// transportImports are the packages that make code transport code.
var transportImports = []string{
	"google.golang.org/grpc",
	module + "/gen/kvdb/v1",
	module + "/internal/wire",
	module + "/internal/resp",
	module + "/internal/service",
	"net/http",
	"github.com/prometheus/",
}

// TestCoreLayersHaveNoTransportCode: the operation layer, the state machine
// and the log codec import nothing of gRPC, the client API, the binary
// protocol or metrics (their dependency on raftnode brings gRPC in
// transitively, for the peer transport; their own code never uses it).
func TestCoreLayersHaveNoTransportCode(t *testing.T) {
	for _, pkg := range []string{"internal/core", "internal/fsm", "internal/command", "internal/auth", "internal/watch"} {
		cmd := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, "./"+pkg)
		cmd.Dir = "../.."
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, imp := range strings.Fields(string(out)) {
			if bad := forbidden(imp, transportImports); bad != "" {
				t.Errorf("%s imports %s: transport code belongs in an adapter (docs/architecture.md)", pkg, imp)
			}
		}
	}
	// The state machine does not know the operation layer above it.
	cmd := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, "./internal/fsm")
	cmd.Dir = "../.."
	out, _ := cmd.CombinedOutput()
	if strings.Contains(string(out), module+"/internal/core") {
		t.Error("internal/fsm imports internal/core")
	}
}

// adapters are the protocol adapters inside internal/service, by the files
// that make them up, and what each must not import: one adapter never uses
// another's types.
var adapters = []struct {
	name   string
	files  func(name string) bool
	banned []string
}{
	{"binary protocol", func(f string) bool { return strings.HasPrefix(f, "binary") },
		[]string{"google.golang.org/grpc", module + "/gen/kvdb/v1", module + "/internal/resp"}},
	{"gRPC", func(f string) bool {
		return f == "kv.go" || f == "txn_service.go" || f == "admin.go" || f == "watch_service.go"
	},
		[]string{module + "/internal/wire", module + "/internal/resp"}},
	{"Redis protocol", func(f string) bool { return strings.HasPrefix(f, "resp") },
		[]string{"google.golang.org/grpc", module + "/gen/kvdb/v1", module + "/internal/wire"}},
}

func TestAdaptersDoNotImportEachOther(t *testing.T) {
	dir := "../../internal/service"
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	checked := map[string]int{}
	for _, path := range files {
		name := filepath.Base(path)
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range adapters {
			if !a.files(name) {
				continue
			}
			checked[a.name]++
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if bad := forbidden(p, a.banned); bad != "" {
					t.Errorf("%s (%s adapter) imports %s", name, a.name, p)
				}
			}
		}
	}
	for _, a := range adapters {
		if checked[a.name] == 0 {
			t.Errorf("no file of the %s adapter found: update the rule with the code", a.name)
		}
	}
}

// forbidden returns the entry of banned that imp falls under, or "".
func forbidden(imp string, banned []string) string {
	for _, b := range banned {
		if imp == b || strings.HasPrefix(imp, strings.TrimSuffix(b, "/")+"/") || (strings.HasSuffix(b, "/") && strings.HasPrefix(imp, b)) {
			return b
		}
	}
	return ""
}

func TestForbiddenMatchesSubpackages(t *testing.T) {
	for imp, want := range map[string]string{
		"google.golang.org/grpc/status":       "google.golang.org/grpc",
		"google.golang.org/grpcx":             "",
		module + "/internal/wire":             module + "/internal/wire",
		"github.com/prometheus/client_golang": "github.com/prometheus/",
	} {
		if got := forbidden(imp, transportImports); got != want {
			t.Errorf("forbidden(%q) = %q, want %q", imp, got, want)
		}
	}
}
