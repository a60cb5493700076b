package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	kvclient "github.com/kvdb/kvdb/client"
)

// proc is a server process started by the harness.
type proc struct {
	name string
	cmd  *exec.Cmd
	dir  string
	done chan struct{}
}

var (
	procsMu sync.Mutex
	procs   []*proc
)

// start runs a server in its own temporary directory, its output in
// dir/log.
func start(name, binary string, args ...string) (*proc, error) {
	dir, err := os.MkdirTemp("", "kvdb-bench-"+name+"-")
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		return nil, err
	}
	args = slices.Clone(args)
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "{dir}", dir)
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	p := &proc{name: name, cmd: cmd, dir: dir, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); log.Close(); close(p.done) }()
	procsMu.Lock()
	procs = append(procs, p)
	procsMu.Unlock()
	return p, nil
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop kills p and removes its directory.
func (p *proc) stop() {
	if p.alive() {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	_ = os.RemoveAll(p.dir)
}

// rssMB is p's resident memory.
func (p *proc) rssMB() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb / 1024
		}
	}
	return -1
}

func stopAll() {
	procsMu.Lock()
	defer procsMu.Unlock()
	for _, p := range procs {
		p.stop()
	}
	procs = nil
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err) // loopback without a free port: nothing can run
	}
	defer l.Close()
	return l.Addr().String()
}

// cluster is n kvdb-server processes; n == 1 is a standalone node.
type cluster struct {
	names, addrs []string
	procs        []*proc
}

func startCluster(ctx context.Context, o *options, n int, extra ...string) (*cluster, error) {
	c := &cluster{}
	for i := range n {
		c.names = append(c.names, fmt.Sprintf("n%d", i+1))
		c.addrs = append(c.addrs, freeAddr())
	}
	secretFile := ""
	if n > 1 {
		// Members authenticate each other with a shared secret (the one-port
		// form); the file is made per cluster and left in the temp dir.
		var b [24]byte
		_, _ = rand.Read(b[:])
		f, err := os.CreateTemp("", "kvdb-bench-peer-secret")
		if err != nil {
			return nil, err
		}
		_, err = f.WriteString(hex.EncodeToString(b[:]))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
		secretFile = f.Name()
	}
	for i := range n {
		args := []string{"-node-id=" + c.names[i], "-address=" + c.addrs[i], "-data-dir={dir}/data", "-log-level=warn"}
		if n > 1 {
			var peers []string
			for j := range n {
				if j != i {
					peers = append(peers, c.names[j]+"="+c.addrs[j])
				}
			}
			args = append(args, "-enable-raft=true", "-peers="+strings.Join(peers, ","), "-peer-secret-file="+secretFile)
		}
		p, err := start(c.names[i], filepath.Join(o.bin, "kvdb-server"), append(args, extra...)...)
		if err != nil {
			return nil, err
		}
		c.procs = append(c.procs, p)
	}
	return c, c.waitLeader(ctx)
}

// waitLeader waits until some node says it leads.
func (c *cluster) waitLeader(ctx context.Context) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if c.leader(ctx) >= 0 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no leader among %v within 20s (logs in %s)", c.addrs, c.procs[0].dir)
}

// leader is the index of the node that says it leads, or -1.
func (c *cluster) leader(ctx context.Context) int {
	for i, a := range c.addrs {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		cl, err := kvclient.New(cctx, kvclient.Options{Endpoints: []string{a}, PoolSize: 1, MaxRetries: 1})
		if err == nil {
			st, serr := cl.Stats(cctx)
			cl.Close()
			if serr == nil && st.GetRaft().GetLeaderId() == c.names[i] {
				cancel()
				return i
			}
		}
		cancel()
	}
	return -1
}

func (c *cluster) stop() {
	for _, p := range c.procs {
		p.stop()
	}
}

func splitComma(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
