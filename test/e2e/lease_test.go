package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestProcessClusterLeaseSurvivesFailover: on three kvdb-server processes,
// kvdbctl grants a lease, attaches a key and keeps the lease alive through
// the list of addresses while the leader is killed with -9; the key outlives the
// lease's TTL several times over, a key with --ttl expires meanwhile, and
// once the keep-alives stop the lease's key goes too.
func TestProcessClusterLeaseSurvivesFailover(t *testing.T) {
	c := startProcCluster(t)
	var lead int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if lead = c.leader(t, -1); lead >= 0 {
			break
		}
	}
	if lead < 0 {
		t.Fatal("no leader")
	}
	// --address a,b,c: kvdbctl goes to the one that leads.
	endpoints := strings.Join(c.addrs, ",")
	run := func(args ...string) (string, int) {
		out, errOut, code := c.ctl(t, endpoints, args...)
		return out + errOut, code
	}
	// Each kvdbctl run starts a process and finds the leader: a TTL of a
	// few of those.
	out, code := run("lease", "grant", "6")
	m := regexp.MustCompile(`lease ([0-9a-f]+) granted`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("lease grant: %d %s", code, out)
	}
	id := m[1]
	if out, code := run("put", "svc/a", "10.0.0.7", "--lease", id); code != 0 {
		t.Fatalf("put --lease: %s", out)
	}
	if out, code := run("put", "otp", "1234", "--ttl", "1s"); code != 0 {
		t.Fatalf("put --ttl: %s", out)
	}
	killed := false
	start := time.Now()
	for i := 0; i < 100 && time.Since(start) < 20*time.Second; i++ {
		if out, code := run("lease", "keep-alive", id, "--once"); code != 0 {
			t.Logf("keep-alive: %s", strings.TrimSpace(out)) // during the election
		}
		if !killed && time.Since(start) > 4*time.Second {
			c.procs[lead].kill()
			killed = true
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("kept alive for %v", time.Since(start).Round(time.Millisecond))
	if out, code := run("get", "svc/a"); code != 0 || strings.TrimSpace(out) != "10.0.0.7" {
		t.Fatalf("the kept-alive key after the failover: %d %s", code, out)
	}
	if out, code := run("get", "otp"); code == 0 {
		t.Fatalf("the key with --ttl 1s is still there: %s", out)
	}
	if out, _ := run("lease", "timetolive", id, "--keys"); !strings.Contains(out, "attached keys([svc/a])") {
		t.Fatalf("timetolive: %s", out)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, code := run("get", "svc/a"); code != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the key outlived its lease")
		}
	}
	c.start(t, lead)
	c.procs[lead].waitReady(t)
}
