package robustness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

var (
	stBuildOnce sync.Once
	stBinDir    string
	stBuildErr  error
)

// stCtlBin is the kvdbctl built with stServerBin.
func stCtlBin(t *testing.T) string {
	t.Helper()
	return filepath.Join(filepath.Dir(stServerBin(t)), "kvdbctl")
}

// stServerBin builds kvdb-server (and kvdbctl) once per test run (without the race
// detector: these tests are about the process and its files).
func stServerBin(t *testing.T) string {
	t.Helper()
	stBuildOnce.Do(func() {
		if stBinDir, stBuildErr = os.MkdirTemp("", "kvdb-robustness-bin"); stBuildErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		for _, name := range []string{"kvdb-server", "kvdbctl"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(stBinDir, name), "./cmd/"+name)
			cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
			if out, err := cmd.CombinedOutput(); err != nil {
				stBuildErr = fmt.Errorf("build %s: %v\n%s", name, err, out)
				return
			}
		}
	})
	if stBuildErr != nil {
		t.Fatal(stBuildErr)
	}
	return filepath.Join(stBinDir, "kvdb-server")
}

func stFreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// stProc is one kvdb-server process.
type stProc struct {
	cmd    *exec.Cmd
	addr   string
	out    *stBuffer
	exited chan struct{}
	err    error
}

type stBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *stBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *stBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// stSpawn starts kvdb-server as node1 on addr with dataDir plus extra flags.
func stSpawn(t *testing.T, addr, dataDir string, extra ...string) *stProc {
	t.Helper()
	args := append([]string{"-node-id=node1", "-address=" + addr, "-data-dir=" + dataDir,
		"-heartbeat-interval=20ms", "-sync-writes=true"}, extra...)
	p := &stProc{cmd: exec.Command(stServerBin(t), args...), addr: addr, out: &stBuffer{}, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.kill)
	return p
}

// stStart spawns a server and waits until /readyz says 200.
func stStart(t *testing.T, addr, dataDir string, extra ...string) *stProc {
	t.Helper()
	p := stSpawn(t, addr, dataDir, extra...)
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-p.exited:
			t.Fatalf("server exited before it was ready: %v\n%s", p.err, p.out)
		default:
		}
		if resp, err := client.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
	}
	t.Fatalf("server at %s not ready in time\n%s", addr, p.out)
	return nil
}

// wait returns the exit status once the process ends on its own.
func (p *stProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("server did not exit\n%s", p.out)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("wait: %v", p.err)
	}
	return 0
}

// stop sends SIGTERM and waits for a clean exit.
func (p *stProc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM\n%s", code, p.out)
	}
}

func (p *stProc) kill() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
}

func stDial(t *testing.T, addr string) kvdbv1.KVServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return kvdbv1.NewKVServiceClient(conn)
}

func stKey(i int) []byte { return []byte(fmt.Sprintf("key-%06d", i)) }

// stWrite puts keys [from, to) with values of size bytes and returns how
// many were acknowledged (it stops at the first error).
func stWrite(t *testing.T, kv kvdbv1.KVServiceClient, from, to, size int) int {
	t.Helper()
	val := bytes.Repeat([]byte("v"), size)
	for i := from; i < to; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := kv.Put(ctx, &kvdbv1.PutRequest{Key: stKey(i), Value: val})
		cancel()
		if err != nil {
			t.Fatalf("put %s: %v", stKey(i), err)
		}
	}
	return to - from
}

// stVerify reads back keys [0, n) and fails on any that is missing.
func stVerify(t *testing.T, kv kvdbv1.KVServiceClient, n int) {
	t.Helper()
	missing := 0
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := kv.Get(ctx, &kvdbv1.GetRequest{Key: stKey(i)})
		cancel()
		if err != nil {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged writes are missing", missing, n)
	}
}

// stCopyDir copies a directory tree (regular files only).
func stCopyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

func stContainsAll(t *testing.T, what, text string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Fatalf("%s does not mention %q:\n%s", what, w, text)
		}
	}
}
