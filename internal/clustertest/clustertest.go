// Package clustertest starts an in-process KVDB cluster for tests of
// packages that talk to several nodes (the Go client, the bench loop,
// kvdbctl): every node serves its client port on 127.0.0.1, and raft
// traffic goes over an in-memory network. Data lives in the test's
// temporary directories; the cluster is shut down by the test's cleanup.
package clustertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/kvdb/kvdb/internal/raftnode"
	"github.com/kvdb/kvdb/internal/service"
)

// Cluster is the running nodes. Addrs[i] is node i's client address.
type Cluster struct {
	t     testing.TB
	net   *raftnode.MemNetwork
	Addrs []string
	ids   []uint64

	mu    sync.Mutex
	nodes []*node // nil once stopped
}

type node struct {
	srv  *service.Server
	done chan error
}

// Start serves size nodes and returns once they agree on a leader.
func Start(t testing.TB, size int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, net: raftnode.NewMemNetwork(uint64(size)), nodes: make([]*node, size)}
	members := make([]raftnode.Member, size)
	for i := range size {
		name := fmt.Sprintf("n%d", i+1)
		c.ids = append(c.ids, service.MemberID(name))
		members[i] = raftnode.Member{ID: c.ids[i], Name: name, Address: "mem:" + name}
	}
	for i := range size {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv, err := service.New(service.Config{
			NodeID: members[i].Name, MemberID: c.ids[i], ClusterID: 7,
			DataDir:          t.TempDir(),
			AdvertiseAddress: members[i].Address,
			ClientAddress:    lis.Addr().String(),
			Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
			Raft: raftnode.Config{Peers: members, Transport: c.net.Transport(c.ids[i]),
				TickInterval: 10 * time.Millisecond},
		})
		if err != nil {
			lis.Close()
			t.Fatalf("service.New: %v", err)
		}
		n := &node{srv: srv, done: make(chan error, 1)}
		go func() { n.done <- srv.Serve(lis) }()
		c.nodes[i] = n
		c.Addrs = append(c.Addrs, lis.Addr().String())
	}
	// Over the gRPC transport members pass each other their client
	// addresses; the in-memory network carries none, so tell each node.
	for _, n := range c.nodes {
		for j, addr := range c.Addrs {
			n.srv.Node().SetPeerClientAddress(c.ids[j], addr)
		}
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.Stop(i)
		}
		c.net.Close()
	})
	c.Leader()
	return c
}

// Stop shuts node i down gracefully, as SIGTERM does (no-op when it is
// stopped).
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.srv.Shutdown(ctx); err != nil {
		c.t.Errorf("Shutdown: %v", err)
	}
	<-n.done
}

// Leader waits until one running node leads and every running node
// follows it, and returns its index.
func (c *Cluster) Leader() int {
	c.t.Helper()
	for range 1500 {
		if l := c.agreedLeader(); l >= 0 {
			return l
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatal("the nodes agree on no leader")
	return -1
}

func (c *Cluster) agreedLeader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	lead := -1
	for i, n := range c.nodes {
		if n != nil && n.srv.Node().Status().State == raft.StateLeader {
			lead = i
		}
	}
	if lead < 0 {
		return -1
	}
	for _, n := range c.nodes {
		if n != nil && n.srv.Node().Status().Leader != c.ids[lead] {
			return -1
		}
	}
	return lead
}
