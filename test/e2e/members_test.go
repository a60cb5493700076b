package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/tlsutil/tlstest"
)

// ctlNoAddress runs kvdbctl with exactly args (no --address added).
func ctlNoAddress(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	_, bin := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
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

type memberView struct {
	Name          string `json:"name"`
	Address       string `json:"address"`
	ClientAddress string `json:"client_address"`
	IsLeader      bool   `json:"is_leader"`
	Reachable     *bool  `json:"reachable"`
	LastContactMs *int64 `json:"last_contact_ms"`
}

// TestClientAddressesAndReachability: each member announces its
// -advertise-client-address (here "localhost:PORT", where the membership
// has "127.0.0.1:PORT", as a host port differs from the container's), so any
// member can name the leader's client address, kvdbctl follows the leader
// among --endpoints, and member list shows from the leader which member is
// reachable: a killed one becomes UNREACHABLE.
func TestClientAddressesAndReachability(t *testing.T) {
	clientAddr := func(peer string) string { return "localhost:" + peer[strings.LastIndexByte(peer, ':')+1:] }
	// startProcClusterWith (peer mTLS on listeners of their own), with the
	// flag naming each node's own port.
	c := &procCluster{names: []string{"n1", "n2", "n3"}, procs: make([]*serverProc, 3), ca: tlstest.NewCA(t, "peer-ca")}
	for range c.names {
		c.addrs = append(c.addrs, freeAddr(t))
		c.peerAddrs = append(c.peerAddrs, freeAddr(t))
		c.dirs = append(c.dirs, t.TempDir())
	}
	c.extra = func(i int) []string { return []string{"-advertise-client-address=" + clientAddr(c.addrs[i])} }
	for i := range c.names {
		c.start(t, i)
	}
	for _, p := range c.procs {
		p.waitReady(t)
	}
	lead := -1
	for deadline := time.Now().Add(15 * time.Second); lead < 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		lead = c.leader(t, -1)
	}
	if lead < 0 {
		t.Fatal("no leader")
	}
	f1, f2 := (lead+1)%3, (lead+2)%3

	// A follower learns the leader's client address from its raft stream,
	// and its not-leader error names it.
	_, admin := dial(t, c.addrs[f1])
	waitFor(t, "the follower to know the leader's client address", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		l, err := admin.MemberList(ctx, &kvdbv1.MemberListRequest{})
		if err != nil {
			return false
		}
		for _, m := range l.GetMembers() {
			if m.GetIsLeader() {
				return m.GetClientAddress() == clientAddr(c.addrs[lead])
			}
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err := admin.TransferLeader(ctx, &kvdbv1.TransferLeaderRequest{Name: c.names[f2]})
	cancel()
	if want := "at " + clientAddr(c.addrs[lead]) + " (advertised address " + c.addrs[lead] + ")"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("TransferLeader on a follower: %v, want it to name %q", err, want)
	}
	st, err := func() (*kvdbv1.StatusResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return admin.Status(ctx, &kvdbv1.StatusRequest{})
	}()
	if err != nil || st.GetClientAddress() != clientAddr(c.addrs[f1]) {
		t.Errorf("Status client_address = %q, %v", st.GetClientAddress(), err)
	}

	// kvdbctl --endpoints: a dead endpoint and a follower first; the
	// member list comes from the leader, with every member's client
	// address and the followers reachable.
	endpoints := strings.Join([]string{freeAddr(t), c.addrs[f1], c.addrs[lead]}, ",")
	list := func() []memberView {
		t.Helper()
		out, errOut, code := ctlNoAddress(t, "--endpoints", endpoints, "member", "list", "-o", "json")
		if code != 0 {
			t.Fatalf("member list: exit %d: %s", code, errOut)
		}
		var v struct{ Members []memberView }
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return v.Members
	}
	waitFor(t, "every member reachable with its client address", func() bool {
		ms := list()
		ok := len(ms) == 3
		for i, m := range ms {
			ok = ok && m.ClientAddress == clientAddr(c.addrs[i])
			if i == lead {
				ok = ok && m.IsLeader && m.Reachable == nil // the leader does not track itself
			} else {
				ok = ok && m.Reachable != nil && *m.Reachable && m.LastContactMs != nil
			}
		}
		return ok
	})

	// Kill a follower: the leader reports it unreachable.
	c.procs[f2].kill()
	waitFor(t, "the killed member to be reported unreachable", func() bool {
		m := list()[f2]
		return m.Reachable != nil && !*m.Reachable && m.LastContactMs != nil
	})
	out, errOut, code := ctlNoAddress(t, "--endpoints", endpoints, "member", "list")
	if code != 0 || strings.Count(out, "\n") != 3 {
		t.Fatalf("member list text: exit %d\n%s%s", code, out, errOut)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		switch {
		case strings.Contains(line, " "+c.names[f2]+" "):
			if !strings.Contains(line, "UNREACHABLE (last contact ") || !strings.Contains(line, "client="+clientAddr(c.addrs[f2])) {
				t.Errorf("killed member's line: %q", line)
			}
		case strings.Contains(line, " "+c.names[f1]+" "):
			if !strings.Contains(line, " reachable (last contact ") {
				t.Errorf("live follower's line: %q", line)
			}
		}
	}
}

// waitFor polls cond until it holds, failing the test after a generous
// bound (a stuck cluster, not a slow one).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
