package raftnode

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// slowSM applies like logSM but takes a while over each entry, so a replay
// after a restart is still running when the node starts to lead.
type slowSM struct {
	logSM
	delay time.Duration
}

func (s *slowSM) Apply(index uint64, data []byte) any {
	if data != nil {
		time.Sleep(s.delay)
	}
	return s.logSM.Apply(index, data)
}

// TestLoneVoterReadsLocally: a lone voter's leader publishes a local read
// index; a read after a restart still waits for the replay of what was
// committed before it; a membership change takes the local path away.
func TestLoneVoterReadsLocally(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n := startSingle(t, dir, &logSM{}, nil)
	const writes = 200
	for i := 0; i < writes; i++ {
		if _, err := n.Propose(ctx, []byte(fmt.Sprint("cmd-", i))); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for n.localRead.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a lone voter's leader never published a local read index")
		}
		time.Sleep(time.Millisecond)
	}
	if li, c := n.localRead.Load(), n.commit.Load(); li > c {
		t.Fatalf("local read index %d above the commit index %d", li, c)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}

	// Restart: the node leads before its apply loop has replayed the log.
	sm := &slowSM{delay: 2 * time.Millisecond}
	n3, err := Start(Config{ID: 1, Name: "n1", Address: "mem:n1", ClusterID: 5, DataDir: dir,
		TickInterval: 5 * time.Millisecond, Logger: quietLogger()}, sm)
	if err != nil {
		t.Fatal(err)
	}
	defer n3.Stop()
	for n3.Status().Leader != 1 {
		if err := ctx.Err(); err != nil {
			t.Fatal("restarted lone voter did not lead")
		}
		time.Sleep(time.Millisecond)
	}
	if err := n3.ReadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(sm.commands()); got < writes {
		t.Fatalf("a read after the restart saw %d of the %d committed writes", got, writes)
	}

	// Two voters: neither reads locally; once one is removed the other,
	// now alone, does.
	net := NewMemNetwork(1)
	defer net.Close()
	members := []Member{{ID: 1, Name: "a", Address: "mem:a"}, {ID: 2, Name: "b", Address: "mem:b"}}
	var nodes []*Node
	for _, m := range members {
		nd, err := Start(Config{ID: m.ID, Name: m.Name, Address: m.Address, ClusterID: 6, DataDir: t.TempDir(),
			Peers: members, Transport: net.Transport(m.ID), TickInterval: 5 * time.Millisecond, Logger: quietLogger()}, &logSM{})
		if err != nil {
			t.Fatal(err)
		}
		defer nd.Stop()
		nodes = append(nodes, nd)
	}
	var leader *Node
	for leader == nil {
		if err := ctx.Err(); err != nil {
			t.Fatal("two voters elected no leader")
		}
		for _, nd := range nodes {
			if nd.Status().Leader == nd.cfg.ID {
				leader = nd
			}
		}
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < 20; i++ {
		if _, err := leader.Propose(ctx, []byte(fmt.Sprint("two-", i))); err != nil {
			t.Fatal(err)
		}
		for _, nd := range nodes {
			if li := nd.localRead.Load(); li != 0 {
				t.Fatalf("node %d published local read index %d with two voters", nd.cfg.ID, li)
			}
		}
	}
	other := uint64(3) - leader.cfg.ID
	if err := leader.RemoveMember(ctx, other); err != nil {
		t.Fatal(err)
	}
	for leader.localRead.Load() == 0 {
		if err := ctx.Err(); err != nil {
			t.Fatal("the remaining lone voter never published a local read index")
		}
		time.Sleep(time.Millisecond)
	}
}
