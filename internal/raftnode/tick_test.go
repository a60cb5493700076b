package raftnode

import (
	"context"
	"errors"
	"testing"
	"time"
)

// tickedCluster is three nodes over a MemNetwork whose logical clocks the
// test advances by hand (Config.Ticks): what happens after how many ticks
// is then exact, whatever the machine's speed.
type tickedCluster struct {
	net   *MemNetwork
	nodes []*Node
	ticks []chan time.Time
}

const tickedElection = 10

func startTicked(t *testing.T) *tickedCluster {
	t.Helper()
	c := &tickedCluster{net: NewMemNetwork(7)}
	t.Cleanup(c.net.Close)
	members := []Member{{ID: 1, Name: "a", Address: "mem:a"}, {ID: 2, Name: "b", Address: "mem:b"}, {ID: 3, Name: "c", Address: "mem:c"}}
	for _, m := range members {
		ch := make(chan time.Time)
		n, err := Start(Config{ID: m.ID, Name: m.Name, Address: m.Address, ClusterID: 5, DataDir: t.TempDir(), Peers: members,
			Transport: c.net.Transport(m.ID), Ticks: ch, ElectionTicks: tickedElection, Logger: quietLogger()}, &logSM{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Stop() })
		c.nodes = append(c.nodes, n)
		c.ticks = append(c.ticks, ch)
	}
	// Only node 1's clock runs, so it is the one that campaigns; the
	// others vote without ever timing out themselves.
	for i := 0; c.nodes[0].Status().Leader != 1; i++ {
		if i > 10*tickedElection {
			t.Fatalf("node 1 not leader after %d ticks", i)
		}
		c.tick(t, 0, 1)
		c.settle(0)
	}
	return c
}

// tick advances node i's clock n times. Each send returns once the raft
// loop took the tick, so after tick(i, n) at least n-1 ticks are fully
// processed.
func (c *tickedCluster) tick(t *testing.T, i, n int) {
	t.Helper()
	for range n {
		select {
		case c.ticks[i] <- time.Now():
		case <-time.After(10 * time.Second):
			t.Fatalf("node %d's raft loop did not take a tick", i+1)
		}
	}
}

// settle gives a campaign started by node i's last tick a moment to finish
// over the network before the next tick; it only paces the loop above.
func (c *tickedCluster) settle(i int) {
	for range 20 {
		if c.nodes[i].Status().Leader != 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReadRoundFailsAfterElectionTimeout: a leader cut off from its
// followers keeps a read round open for exactly ElectionTicks ticks, then
// fails it with ErrNoLeader.
func TestReadRoundFailsAfterElectionTimeout(t *testing.T) {
	c := startTicked(t)
	c.net.Isolate(1)
	done := make(chan error, 1)
	go func() { done <- c.nodes[0].ReadIndex(context.Background()) }()
	// The round starts when the loop next runs; ticks then count.
	waitQueued(t, c.nodes[0], false)
	c.tick(t, 0, tickedElection)
	select {
	case err := <-done:
		t.Fatalf("read round ended after fewer than %d+1 ticks: %v", tickedElection, err)
	default:
	}
	c.tick(t, 0, 2) // the 11th tick fails the round; the 12th proves it ran
	select {
	case err := <-done:
		if !errors.Is(err, ErrNoLeader) {
			t.Fatalf("read round failed with %v, want ErrNoLeader", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read round still open after the election timeout")
	}
}

// TestPendingProposalFailsOnLeaderChange: a proposal waiting on an isolated
// leader fails with ErrLeaderChanged when check-quorum makes the leader step
// down, which happens after ElectionTicks ticks without a quorum.
func TestPendingProposalFailsOnLeaderChange(t *testing.T) {
	c := startTicked(t)
	c.net.Isolate(1)
	done := make(chan error, 1)
	go func() {
		_, err := c.nodes[0].Propose(context.Background(), []byte("lost"))
		done <- err
	}()
	waitQueued(t, c.nodes[0], true)
	// Check-quorum looks every ElectionTicks ticks; a heartbeat answer
	// already in flight when the leader was cut off can carry it past one
	// of those checks. After each tick the proposer gets a moment to run:
	// without it the test and the raft loop can pass ticks back and forth
	// faster than the scheduler runs the proposer that was answered.
	for i := 0; ; i++ {
		if i > 4*tickedElection {
			t.Fatalf("proposal still pending after %d ticks: %+v", i, c.nodes[0].Status())
		}
		c.tick(t, 0, 1)
		select {
		case err := <-done:
			if !errors.Is(err, ErrLeaderChanged) {
				t.Fatalf("proposal failed with %v, want ErrLeaderChanged", err)
			}
			if i < tickedElection-1 {
				t.Fatalf("leader stepped down after %d ticks, before the election timeout", i+1)
			}
			if st := c.nodes[0].Status(); st.Leader != 0 {
				t.Fatalf("isolated node still names leader %d", st.Leader)
			}
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// waitQueued waits until the goroutine that just called into node n has
// handed its request over and the raft loop has taken it (the request
// channels are empty; for a proposal, its waiter is registered), so the
// ticks that follow count from after it.
func waitQueued(t *testing.T, n *Node, proposal bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	time.Sleep(20 * time.Millisecond)
	for len(n.proposeC) != 0 || len(n.readC) != 0 || (proposal && n.waits.pending.Load() == 0) {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the raft loop")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLostMembershipChangeExpires: a membership change that cannot commit
// (its leader is cut off) blocks the next one with ErrConfChangeInProgress
// for exactly 3 election timeouts of ticks, then expires.
func TestLostMembershipChangeExpires(t *testing.T) {
	c := startTicked(t)
	// An entry every follower applied: both answered the leader since its
	// last check-quorum round, so it counts them active.
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	if _, err := c.nodes[0].Propose(pctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	idx := c.nodes[0].sm.AppliedIndex()
	for _, n := range c.nodes {
		for n.sm.AppliedIndex() < idx {
			if pctx.Err() != nil {
				t.Fatal("a follower did not apply the entry")
			}
			time.Sleep(time.Millisecond)
		}
	}
	c.net.Isolate(1)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	// Proposed (the followers were active a moment ago) but never committed.
	if err := c.nodes[0].AddMember(ctx, Member{ID: 4, Name: "d", Address: "mem:d"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("add on an isolated leader: %v, want a deadline", err)
	}
	if c.nodes[0].confPending.Load() == 0 {
		t.Fatal("the lost change is not pending")
	}
	// At most 3×election ticks processed: the change is still pending.
	c.tick(t, 0, 3*tickedElection)
	if c.nodes[0].confPending.Load() == 0 {
		t.Fatalf("the change expired within 3×%d ticks", tickedElection)
	}
	// The next tick expires it; the one after proves that one ran.
	c.tick(t, 0, 2)
	if p := c.nodes[0].confPending.Load(); p != 0 {
		t.Fatalf("the lost change (%d) still pending after 3×%d+1 ticks", p, tickedElection)
	}
}
