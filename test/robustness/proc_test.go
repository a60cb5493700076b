package robustness

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Harness of the connection tests: real kvdb-server processes on loopback,
// built once per test binary without the race detector (the bounds are
// about the shipped binary's memory).

// connServerBinary is the kvdb-server the connection tests run: the one
// built for the package (stServerBin), unless KVDB_ROBUSTNESS_SERVER names
// another build to measure.
func connServerBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("KVDB_ROBUSTNESS_SERVER"); bin != "" {
		return bin
	}
	return stServerBin(t)
}

// connNode is one kvdb-server process.
type connNode struct {
	cmd    *exec.Cmd
	addr   string
	out    *stBuffer
	exited chan error
}

// startConnNode starts a standalone node on a free loopback port with extra
// flags and waits until /readyz answers 200.
func startConnNode(t *testing.T, extra ...string) *connNode {
	t.Helper()
	bin := connServerBinary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	args := append([]string{"-node-id=node1", "-address=" + addr, "-data-dir=" + t.TempDir(),
		"-heartbeat-interval=20ms", "-log-level=warn"}, extra...)
	n := &connNode{cmd: exec.Command(bin, args...), addr: addr, out: &stBuffer{}, exited: make(chan error, 1)}
	n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.exited <- n.cmd.Wait() }()
	t.Cleanup(func() {
		_ = n.cmd.Process.Signal(syscall.SIGKILL)
		<-n.exited
	})
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-n.exited:
			n.exited <- err
			t.Fatalf("kvdb-server exited: %v\n%s", err, n.out)
		default:
		}
		resp, err := client.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				client.CloseIdleConnections()
				return n
			}
		}
	}
	t.Fatalf("kvdb-server at %s not ready\n%s", addr, n.out)
	return nil
}

// rss is the node's resident set size in bytes (Linux /proc).
func (n *connNode) rss(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.cmd.Process.Pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/pid/status")
	return 0
}

// peakRSS samples the node's RSS every 50 ms for d and returns the most:
// the node may still be reading what the kernel buffered for it.
func (n *connNode) peakRSS(t *testing.T, d time.Duration) int64 {
	t.Helper()
	peak := n.rss(t)
	for range int(d / (50 * time.Millisecond)) {
		time.Sleep(50 * time.Millisecond)
		peak = max(peak, n.rss(t))
	}
	return peak
}

// connRaiseFileLimit lifts the soft RLIMIT_NOFILE (inherited by the nodes
// this test starts) to need, or skips.
func connRaiseFileLimit(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	if lim.Cur < need {
		lim.Cur = min(need, lim.Max)
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	if lim.Cur < need {
		t.Skipf("RLIMIT_NOFILE is %d, need %d", lim.Cur, need)
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
