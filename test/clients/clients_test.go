//go:build clients

package clients

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// root is the repository root.
func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// need reports a missing tool: a failure under CI, where make test-clients
// has installed everything, and a skip on a developer's machine.
func need(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + " (make test-clients installs it)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// python returns the interpreter with grpc: $PYTHON, else Debian's.
func python(t *testing.T) string {
	t.Helper()
	py := os.Getenv("PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	if out, err := exec.Command(py, "-c", "import grpc, google.protobuf").CombinedOutput(); err != nil {
		need(t, "%s cannot import grpc and protobuf: %v\n%s", py, err, out)
	}
	return py
}

// grpcurl returns $GRPCURL, else .tools/bin/grpcurl.
func grpcurl(t *testing.T) string {
	t.Helper()
	g := os.Getenv("GRPCURL")
	if g == "" {
		g = filepath.Join(root(), ".tools", "bin", "grpcurl")
	}
	if _, err := os.Stat(g); err != nil {
		need(t, "no grpcurl at %s", g)
	}
	return g
}

var (
	buildOnce sync.Once
	serverBin string
	buildErr  error
)

// server builds kvdb-server once per run.
func server(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kvdb-clients-bin")
		if err != nil {
			buildErr = err
			return
		}
		serverBin = filepath.Join(dir, "kvdb-server")
		cmd := exec.Command("go", "build", "-o", serverBin, "./cmd/kvdb-server")
		cmd.Dir = root()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build kvdb-server: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return serverBin
}

// syncBuffer collects a process's output for failure messages.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startNode runs a fresh single node named node1 on a free loopback port
// and returns its address once /readyz says it is ready. The node is
// killed when the test ends.
func startNode(t *testing.T) string {
	t.Helper()
	bin := server(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	logs := &syncBuffer{}
	cmd := exec.Command(bin, "-node-id=node1", "-address="+addr, "-data-dir="+t.TempDir(), "-heartbeat-interval=20ms")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		if t.Failed() {
			t.Logf("kvdb-server log:\n%s", logs)
		}
	})

	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("kvdb-server exited before it was ready: %v\n%s", err, logs)
		default:
		}
		if resp, err := client.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("kvdb-server at %s not ready in 30s\n%s", addr, logs)
	return ""
}

// run executes name with args under a deadline and returns its combined
// output and exit code; it fails the test only if the command cannot run.
func run(t *testing.T, env []string, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = root()
	// No __pycache__ in the source tree.
	cmd.Env = append(append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1"), env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %v: timed out\n%s", name, args, out)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return string(out), 0
}

func TestPythonExample(t *testing.T) {
	py := python(t)
	addr := startNode(t)
	out, code := run(t, nil, py, "examples/python/kvdb_example.py", "--address", addr)
	if code != 0 {
		t.Fatalf("example exited %d:\n%s", code, out)
	}
	for _, want := range []string{
		"GET greeting -> 'hello from python'",
		"GET no-such-key -> NOT_FOUND",
		"SCAN fruit/ -> 3 keys",
		"fruit/banana = yellow",
		"TXN counter -> 1",
		"STATS",
		"node=node1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("example output lacks %q:\n%s", want, out)
		}
	}
	// A second run finds the counter left by the first.
	out, code = run(t, nil, py, "examples/python/kvdb_example.py", "--address", addr)
	if code != 0 || !strings.Contains(out, "TXN counter -> 2") {
		t.Errorf("second run (exit %d) does not increment the counter:\n%s", code, out)
	}
}

// TestPythonLeaseExample: a lease kept alive from Python keeps its key,
// and the key goes once the keep-alives stop.
func TestPythonLeaseExample(t *testing.T) {
	py := python(t)
	addr := startNode(t)
	out, code := run(t, nil, py, "examples/python/lease_example.py", "--address", addr, "--ttl", "1")
	if code != 0 {
		t.Fatalf("example exited %d:\n%s", code, out)
	}
	for _, want := range []string{"LEASE GRANT ->", "GET services/api/1 -> '10.0.0.7:80'", "GET otp/alice -> expires in about",
		"keys ['services/api/1']", "NOT_FOUND (the lease expired)"} {
		if !strings.Contains(out, want) {
			t.Errorf("example output lacks %q:\n%s", want, out)
		}
	}
}

// TestPythonWatchExample runs the watch example: the changes it wrote,
// replayed from the node's history through the generated WatchService
// stub, in order.
func TestPythonWatchExample(t *testing.T) {
	py := python(t)
	addr := startNode(t)
	out, code := run(t, nil, py, "examples/python/watch_example.py", "--address", addr)
	want := "PUT watch-example/a 1\nPUT watch-example/a 2\nPUT watch-example/b 3\nDELETE watch-example/a\n"
	if code != 0 || out != want {
		t.Fatalf("watch example (exit %d) printed:\n%s\nwant:\n%s", code, out, want)
	}
}

// TestPythonExampleWrongAddress: nobody listening is one clear line and
// exit status 1, not a FutureTimeoutError traceback.
func TestPythonExampleWrongAddress(t *testing.T) {
	py := python(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	out, code := run(t, nil, py, "examples/python/kvdb_example.py", "--address", addr, "--connect-timeout", "1")
	want := "kvdb_example.py: cannot reach a KVDB node at " + addr + " within 1 s (is kvdb-server running there?)\n"
	if code != 1 || out != want {
		t.Errorf("exit %d, output:\n%s\nwant exit 1 and\n%s", code, out, want)
	}
}

func TestPythonClient(t *testing.T) {
	py := python(t)
	addr := startNode(t)
	out, code := run(t, []string{"KVDB_ADDRESS=" + addr}, py, "test/clients/python/test_kvdb_client.py")
	t.Logf("python:\n%s", out)
	if code != 0 {
		t.Fatalf("test_kvdb_client.py exited %d", code)
	}
	if !regexp.MustCompile(`(?m)^Ran \d+ tests? in`).MatchString(out) || !regexp.MustCompile(`(?m)^OK$`).MatchString(out) {
		t.Fatal("test_kvdb_client.py did not report its tests as OK")
	}
}

// TestGRPCurlPutGet uses nothing but reflection: no .proto files.
func TestGRPCurlPutGet(t *testing.T) {
	g := grpcurl(t)
	addr := startNode(t)
	b64 := base64.StdEncoding.EncodeToString

	out, code := run(t, nil, g, "-plaintext", "-max-time", "10", addr, "list")
	if code != 0 || !strings.Contains(out, "kvdb.v1.KVService") {
		t.Fatalf("grpcurl list (exit %d) does not show kvdb.v1.KVService:\n%s", code, out)
	}

	put := fmt.Sprintf(`{"key":%q,"value":%q}`, b64([]byte("grpcurl/key")), b64([]byte("value\x00\xff")))
	out, code = run(t, nil, g, "-plaintext", "-max-time", "10", "-d", put, addr, "kvdb.v1.KVService/Put")
	if code != 0 {
		t.Fatalf("Put exited %d:\n%s", code, out)
	}
	var putResp struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	if err := json.Unmarshal([]byte(out), &putResp); err != nil || putResp.Header.Revision == "" {
		t.Fatalf("Put answer has no header.revision (%v):\n%s", err, out)
	}

	get := fmt.Sprintf(`{"key":%q}`, b64([]byte("grpcurl/key")))
	out, code = run(t, nil, g, "-plaintext", "-max-time", "10", "-d", get, addr, "kvdb.v1.KVService/Get")
	if code != 0 {
		t.Fatalf("Get exited %d:\n%s", code, out)
	}
	var getResp struct {
		KV struct {
			Key         string `json:"key"`
			Value       string `json:"value"`
			ModRevision string `json:"modRevision"`
		} `json:"kv"`
	}
	if err := json.Unmarshal([]byte(out), &getResp); err != nil {
		t.Fatalf("Get answer is not JSON (%v):\n%s", err, out)
	}
	if getResp.KV.Value != b64([]byte("value\x00\xff")) || getResp.KV.ModRevision != putResp.Header.Revision {
		t.Fatalf("Get = %+v, want the value put at revision %s", getResp.KV, putResp.Header.Revision)
	}

	// A missing key: grpcurl exits 64 + the gRPC code (NOT_FOUND = 5).
	missing := fmt.Sprintf(`{"key":%q}`, b64([]byte("grpcurl/missing")))
	out, code = run(t, nil, g, "-plaintext", "-max-time", "10", "-d", missing, addr, "kvdb.v1.KVService/Get")
	if code != 64+5 || !strings.Contains(out, "Code: NotFound") {
		t.Fatalf("Get of a missing key: exit %d, want 69 and NotFound:\n%s", code, out)
	}
}

// docLine is one grpcurl command in a code block of docs/clients.md and the gRPC code it
// must fail with ("" for success).
type docLine struct {
	cmd, wantCode string
}

var expectRE = regexp.MustCompile(`\s+#\s*->\s*(\w+)\s*$`)

func docGRPCurlLines(t *testing.T) []docLine {
	t.Helper()
	f, err := os.Open(filepath.Join(root(), "docs", "clients.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []docLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	inCode := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
			continue
		}
		if !inCode || !strings.HasPrefix(line, "grpcurl ") {
			continue
		}
		d := docLine{cmd: line}
		if m := expectRE.FindStringSubmatchIndex(line); m != nil {
			d.cmd, d.wantCode = line[:m[0]], line[m[2]:m[3]]
		}
		lines = append(lines, d)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// TestDocsGRPCurlLines runs the grpcurl one-liners of docs/clients.md in
// order against a fresh node and checks that together they call every RPC
// of the public services, so the document cannot drift from the server.
func TestDocsGRPCurlLines(t *testing.T) {
	g := grpcurl(t)
	addr := startNode(t)
	lines := docGRPCurlLines(t)
	if len(lines) == 0 {
		t.Fatal("docs/clients.md has no grpcurl lines")
	}
	env := []string{"PATH=" + filepath.Dir(g) + string(os.PathListSeparator) + os.Getenv("PATH")}
	called := map[string]bool{}
	for _, l := range lines {
		cmd := strings.ReplaceAll(l.cmd, "localhost:8080", addr)
		out, code := run(t, env, "bash", "-c", "grpcurl -max-time 10 "+strings.TrimPrefix(cmd, "grpcurl "))
		switch {
		case l.wantCode == "" && code != 0:
			t.Errorf("%s\nexit %d:\n%s", l.cmd, code, out)
		case l.wantCode != "" && (code < 64 || !strings.Contains(out, "Code: "+l.wantCode+"\n")):
			t.Errorf("%s\nexit %d, want the error code %s:\n%s", l.cmd, code, l.wantCode, out)
		}
		if f := strings.Fields(cmd); len(f) > 0 {
			called[f[len(f)-1]] = true
		}
	}
	for _, svc := range []string{"kvdb.v1.KVService", "kvdb.v1.TxnService", "kvdb.v1.AdminService"} {
		out, code := run(t, nil, g, "-plaintext", "-max-time", "10", addr, "list", svc)
		if code != 0 {
			t.Fatalf("grpcurl list %s exited %d:\n%s", svc, code, out)
		}
		methods := strings.Fields(out)
		if len(methods) < 5 {
			t.Fatalf("grpcurl list %s shows too few methods: %q", svc, methods)
		}
		for _, m := range methods {
			// grpcurl lists "pkg.Service.Method"; commands name "pkg.Service/Method".
			rpc := svc + "/" + strings.TrimPrefix(m, svc+".")
			if !called[rpc] {
				t.Errorf("docs/clients.md has no grpcurl line calling %s", rpc)
			}
		}
	}
}

// TestRedisPy runs redis-py (Debian's python3-redis) against a node's
// Redis protocol on the node's port: GET/SET/MSET/INCR, a pipeline, MULTI/EXEC
// and a WATCH conflict, in RESP2 and RESP3.
func TestRedisPy(t *testing.T) {
	py := os.Getenv("PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	if out, err := exec.Command(py, "-c", "import redis").CombinedOutput(); err != nil {
		need(t, "%s cannot import redis (Debian's python3-redis): %v\n%s", py, err, out)
	}
	addr := startNode(t)
	out, code := run(t, nil, py, "test/clients/python/test_redis_py.py", addr)
	if code != 0 || !strings.Contains(out, "redis-py ok") {
		t.Fatalf("redis-py exited %d:\n%s", code, out)
	}
}
