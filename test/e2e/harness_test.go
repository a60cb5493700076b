package e2e

import (
	"bytes"
	"context"
	"fmt"
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

	kvclient "github.com/kvdb/kvdb/client"
	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds kvdb-server and kvdbctl once for the whole package.
func binaries(t *testing.T) (server, ctl string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "kvdb-e2e-bin")
		if buildErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		for _, name := range []string{"kvdb-server", "kvdbctl"} {
			cmd := exec.Command("go", "build", "-race", "-o", filepath.Join(binDir, name), "./cmd/"+name)
			if os.Getenv("KVDB_E2E_NORACE") != "" {
				cmd = exec.Command("go", "build", "-o", filepath.Join(binDir, name), "./cmd/"+name)
			}
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", name, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "kvdb-server"), filepath.Join(binDir, "kvdbctl")
}

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// serverProc is one running kvdb-server process.
type serverProc struct {
	cmd    *exec.Cmd
	addr   string
	stderr *bytes.Buffer
	exited chan error
}

func startServer(t *testing.T, addr, dataDir string, extra ...string) *serverProc {
	t.Helper()
	p := spawnServer(t, append([]string{"-node-id=node1", "-address=" + addr, "-data-dir=" + dataDir, "-heartbeat-interval=20ms"}, extra...)...)
	p.waitReady(t)
	return p
}

// spawnServer starts kvdb-server with exactly args and does not wait.
func spawnServer(t *testing.T, args ...string) *serverProc {
	t.Helper()
	server, _ := binaries(t)
	addr := ""
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "-address="); ok {
			addr = v
		}
	}
	cmd := exec.Command(server, args...)
	p := &serverProc{cmd: cmd, addr: addr, stderr: &bytes.Buffer{}, exited: make(chan error, 1)}
	cmd.Stderr = &lockedWriter{w: p.stderr}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *serverProc) waitReady(t *testing.T) {
	t.Helper()
	if p.waitReadyOrTaken(t) {
		t.Fatalf("server could not bind its address\n%s", p.logs())
	}
}

// waitReadyOrTaken is waitReady, except that a server that exited because
// one of its addresses was in use is reported (true) rather than failing
// the test, for a caller that can choose other addresses.
func (p *serverProc) waitReadyOrTaken(t *testing.T) (taken bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case err := <-p.exited:
			p.exited <- err
			if strings.Contains(p.logs(), "address already in use") {
				return true
			}
			t.Fatalf("server exited before it was ready: %v\n%s", err, p.logs())
		default:
		}
		resp, err := client.Get("http://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return false
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("server at %s not ready in time\n%s", p.addr, p.logs())
	return false
}

func (p *serverProc) logs() string {
	if lw, ok := p.cmd.Stderr.(*lockedWriter); ok {
		lw.mu.Lock()
		defer lw.mu.Unlock()
	}
	return p.stderr.String()
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *serverProc) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	err := <-p.exited
	p.exited <- err
}

// terminate sends SIGTERM and returns the exit error.
func (p *serverProc) terminate(t *testing.T) error {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("server did not exit after SIGTERM\n%s", p.logs())
		return nil
	}
}

func dial(t *testing.T, addr string) (kvdbv1.KVServiceClient, kvdbv1.AdminServiceClient) {
	t.Helper()
	return dialAs(t, addr, "", "")
}

// dialAs is dial authenticating as user ("": anonymous).
func dialAs(t *testing.T, addr, user, password string) (kvdbv1.KVServiceClient, kvdbv1.AdminServiceClient) {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if user != "" {
		opts = append(opts, grpc.WithChainUnaryInterceptor(kvclient.AuthInterceptor(user, password)))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return kvdbv1.NewKVServiceClient(conn), kvdbv1.NewAdminServiceClient(conn)
}

// ctl runs kvdbctl with args and stdin, returning stdout, stderr and the
// exit code.
func ctl(t *testing.T, addr, stdin string, args ...string) (string, string, int) {
	t.Helper()
	_, bin := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--address", addr}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("kvdbctl %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// String returns what was written so far.
func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

func runCombined(bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}
