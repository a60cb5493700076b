package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/tlsutil/tlstest"
)

// procCluster is three kvdb-server processes on loopback. Peers talk over
// their own listeners with peer mTLS (certificates made for the test).
type procCluster struct {
	names     []string
	addrs     []string
	peerAddrs []string
	dirs      []string
	ca        *tlstest.CA
	procs     []*serverProc
	// extra returns more flags for node i (nil: none).
	extra func(i int) []string
	// user and password authenticate clients once enableAuth ran; conns
	// keeps one connection per address and user, so a token is fetched
	// once per connection, not per call.
	user, password string
	mu             sync.Mutex
	conns          map[string]procClients
}

type procClients struct {
	kv    kvdbv1.KVServiceClient
	admin kvdbv1.AdminServiceClient
}

// enableAuth creates root and turns authentication on through kvdbctl;
// afterwards c.dial and c.ctl authenticate as root.
func (c *procCluster) enableAuth(t *testing.T, via int) {
	t.Helper()
	const pw = "e2e-root-pw"
	for _, args := range [][]string{{"--timeout", "60s", "user", "add", "root", "--new-user-password", pw}, {"--timeout", "60s", "auth", "enable"}} {
		if out, errOut, code := ctl(t, c.addrs[via], "", args...); code != 0 {
			t.Fatalf("kvdbctl %v: exit %d: %s%s", args, code, out, errOut)
		}
	}
	c.user, c.password = "root", pw
	if _, errOut, code := ctl(t, c.addrs[via], "", "get", "anything"); code == 0 || !strings.Contains(errOut, "Unauthenticated") {
		t.Fatalf("anonymous get after auth enable: exit %d: %s", code, errOut)
	}
}

// dial connects to addr as the cluster's user (none before enableAuth).
func (c *procCluster) dial(t *testing.T, addr string) (kvdbv1.KVServiceClient, kvdbv1.AdminServiceClient) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	key := c.user + "@" + addr
	if pc, ok := c.conns[key]; ok {
		return pc.kv, pc.admin
	}
	kv, admin := dialAs(t, addr, c.user, c.password)
	if c.conns == nil {
		c.conns = map[string]procClients{}
	}
	c.conns[key] = procClients{kv, admin}
	return kv, admin
}

// ctl runs kvdbctl against addr as the cluster's user.
func (c *procCluster) ctl(t *testing.T, addr string, args ...string) (string, string, int) {
	t.Helper()
	if c.user != "" {
		args = append([]string{"--user", c.user + ":" + c.password}, args...)
	}
	return ctl(t, addr, "", args...)
}

func startProcCluster(t *testing.T) *procCluster {
	t.Helper()
	return startProcClusterWith(t, nil)
}

// startProcClusterWith is startProcCluster with extra flags per node.
func startProcClusterWith(t *testing.T, extra func(i int) []string) *procCluster {
	t.Helper()
	ca := tlstest.NewCA(t, "peer-ca")
	// freeAddr's ports are free when chosen; another process (a test of
	// another package, an outgoing connection) may take one before its
	// server binds it. The cluster then starts again on new addresses.
	for attempt := 1; ; attempt++ {
		c := &procCluster{names: []string{"n1", "n2", "n3"}, extra: extra, ca: ca}
		for range c.names {
			c.addrs = append(c.addrs, freeAddr(t))
			c.peerAddrs = append(c.peerAddrs, freeAddr(t))
			c.dirs = append(c.dirs, t.TempDir())
		}
		c.procs = make([]*serverProc, 3)
		for i := range c.names {
			c.start(t, i)
		}
		taken := false
		for _, p := range c.procs {
			if taken = p.waitReadyOrTaken(t); taken {
				break
			}
		}
		if !taken {
			return c
		}
		for _, p := range c.procs {
			p.kill()
		}
		if attempt == 3 {
			t.Fatal("an address of the cluster was taken before its server bound it, three times")
		}
		t.Log("an address was taken before its server bound it: starting the cluster again on new ones")
	}
}

func (c *procCluster) start(t *testing.T, i int) {
	var peers []string
	for j := range c.names {
		if j != i {
			peers = append(peers, c.names[j]+"="+c.addrs[j]+"/"+c.peerAddrs[j])
		}
	}
	args := []string{"-node-id=" + c.names[i], "-address=" + c.addrs[i], "-data-dir=" + c.dirs[i],
		"-enable-raft=true", "-peers=" + strings.Join(peers, ","), "-sync-writes=true"}
	args = append(args, c.peerFlags(t, c.names[i], c.peerAddrs[i])...)
	if c.extra != nil {
		args = append(args, c.extra(i)...)
	}
	c.procs[i] = spawnServer(t, args...)
}

// peerFlags are the peer mTLS flags of member name listening for peers on
// peerAddr; its certificate is made now (and kept across restarts).
func (c *procCluster) peerFlags(t *testing.T, name, peerAddr string) []string {
	pair := tlstest.Pair{CertFile: filepath.Join(c.ca.Dir, name+".pem"), KeyFile: filepath.Join(c.ca.Dir, name+"-key.pem")}
	if _, err := os.Stat(pair.CertFile); err != nil {
		pair = c.ca.Issue(t, name, tlstest.Options{})
	}
	return []string{"-peer-address=" + peerAddr, "-peer-cert-file=" + pair.CertFile, "-peer-key-file=" + pair.KeyFile,
		"-peer-trusted-ca-file=" + c.ca.CAFile, "-peer-client-cert-auth"}
}

// leader asks every live node and returns the index of the one that says
// it leads, or -1.
func (c *procCluster) leader(t *testing.T, skip int) int {
	for i, a := range c.addrs {
		if i == skip {
			continue
		}
		_, admin := c.dial(t, a)
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		st, err := admin.Status(ctx, &kvdbv1.StatusRequest{})
		cancel()
		if err == nil && st.GetIsLeader() {
			return i
		}
	}
	return -1
}

// TestProcessClusterFailover: kill -9 the leader of a 3-process cluster
// while clients write; a new leader is elected (the time is logged), writes go on,
// every acknowledged write is readable, and the killed node rejoins and
// catches up. Then a fourth node joins with -join and is removed again.
func TestProcessClusterFailover(t *testing.T) {
	c := startProcCluster(t)
	old := -1
	for deadline := time.Now().Add(10 * time.Second); old < 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		old = c.leader(t, -1)
	}
	if old < 0 {
		t.Fatal("no leader")
	}
	// Everything below runs with authentication enabled (and peer mTLS).
	c.enableAuth(t, old)

	var (
		mu    sync.Mutex
		acked = map[string]string{}
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	clients := make([]kvdbv1.KVServiceClient, 3)
	for i, a := range c.addrs {
		clients[i], _ = c.dial(t, a)
	}
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for n := 0; n < 1_000_000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				k, v := fmt.Sprintf("w%d-%d", w, n), fmt.Sprint(n)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := clients[rng.IntN(3)].Put(ctx, &kvdbv1.PutRequest{Key: []byte(k), Value: []byte(v)})
				cancel()
				if err == nil {
					mu.Lock()
					acked[k] = v
					mu.Unlock()
				} else {
					time.Sleep(5 * time.Millisecond)
				}
			}
		}(w)
	}
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	before := len(acked)
	mu.Unlock()

	killed := time.Now()
	c.procs[old].kill()
	newLeader := -1
	for newLeader < 0 && time.Since(killed) < 30*time.Second {
		newLeader = c.leader(t, old)
		time.Sleep(10 * time.Millisecond)
	}
	elected := time.Since(killed)
	// The election time is a measurement (docs/benchmarks.md), not a
	// test bound: a loaded 2-core -race run can take several seconds.
	if newLeader < 0 {
		t.Fatalf("no new leader %v after the kill", elected)
	}
	t.Logf("leader %s killed; %s leads after %v", c.names[old], c.names[newLeader], elected.Round(time.Millisecond))
	// Writes continue: new acknowledgements arrive soon after the election.
	var during int
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		during = len(acked)
		mu.Unlock()
		if during > before+10 {
			break
		}
	}
	if during <= before+10 {
		t.Fatalf("writes did not continue after the leader was killed (%d acknowledged before, %d 5 s after the election)", before, during)
	}
	t.Logf("writes resumed %v after the kill", time.Since(killed).Round(time.Millisecond))

	c.start(t, old)
	c.procs[old].waitReady(t)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()

	// Every acknowledged write is on every node, the restarted one included.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range c.addrs {
		kv, _ := c.dial(t, c.addrs[i])
		for k, v := range acked {
			resp, err := kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte(k)})
			if err != nil || string(resp.GetKv().GetValue()) != v {
				t.Fatalf("%s: acknowledged %s=%s reads %v, %v", c.names[i], k, v, resp, err)
			}
		}
	}
	t.Logf("%d acknowledged writes verified on all three nodes", len(acked))

	// A fourth node joins a running cluster, gets the data, and leaves.
	addr4, dir4 := freeAddr(t), t.TempDir()
	pwFile := filepath.Join(t.TempDir(), "root-password")
	if err := os.WriteFile(pwFile, []byte(c.password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p4 := spawnServer(t, append([]string{"-node-id=n4", "-address=" + addr4, "-data-dir=" + dir4, "-enable-raft=true", "-join=" + c.addrs[newLeader],
		"-join-user=root", "-join-password-file=" + pwFile}, c.peerFlags(t, "n4", freeAddr(t))...)...)
	p4.waitReady(t)
	kv4, admin4 := c.dial(t, addr4)
	var list *kvdbv1.MemberListResponse
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if list, err = admin4.MemberList(ctx, &kvdbv1.MemberListRequest{}); err == nil && len(list.GetMembers()) == 4 {
			break
		}
	}
	if err != nil || len(list.GetMembers()) != 4 {
		t.Fatalf("after join: %v %v", list, err)
	}
	for k, v := range acked {
		resp, err := kv4.Get(ctx, &kvdbv1.GetRequest{Key: []byte(k)})
		if err != nil || string(resp.GetKv().GetValue()) != v {
			t.Fatalf("joined node: %s reads %v, %v", k, resp, err)
		}
		break
	}
	_, out, code := c.ctl(t, c.addrs[(newLeader+1)%3], "member", "remove", "n4")
	if code != 0 {
		t.Fatalf("member remove n4: exit %d: %s", code, out)
	}
	out, _, code = c.ctl(t, c.addrs[newLeader], "member", "list")
	if code != 0 || strings.Contains(out, "n4") || strings.Count(out, "\n") != 3 {
		t.Fatalf("member list after remove (exit %d):\n%s", code, out)
	}
	// The removed node refuses work.
	if _, err := kv4.Put(ctx, &kvdbv1.PutRequest{Key: []byte("x"), Value: []byte("y")}); status.Code(err) != codes.FailedPrecondition && status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("removed node accepted a write: %v", err)
	}
	// It learns it was removed (from the log, or from a peer refusing its
	// messages), says so and exits 0.
	select {
	case err := <-p4.exited:
		p4.exited <- err
		if err != nil {
			t.Fatalf("removed node exited with %v\n%s", err, p4.logs())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("removed node still running 30 s after its removal\n%s", p4.logs())
	}
	if !strings.Contains(p4.logs(), "removed from the cluster; exiting") {
		t.Fatalf("removed node did not log why it exited:\n%s", p4.logs())
	}
}
