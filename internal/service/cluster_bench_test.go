package service

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/raftnode"
)

// grpcCluster is three in-process nodes that talk raft over the real gRPC
// transport on loopback, as three processes would.
type grpcCluster struct {
	nodes []*testNode
	lis   []net.Listener
	dirs  []string
	names []string
	addrs []string
}

func startGRPCCluster(b testing.TB, tick time.Duration) *grpcCluster {
	c := &grpcCluster{}
	for i := 0; i < 3; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		c.lis = append(c.lis, l)
		c.addrs = append(c.addrs, l.Addr().String())
		c.names = append(c.names, fmt.Sprintf("b%d", i+1))
		c.dirs = append(c.dirs, b.TempDir())
	}
	c.nodes = make([]*testNode, 3)
	for i := range c.nodes {
		c.start(b, i, tick)
	}
	return c
}

func (c *grpcCluster) members() []raftnode.Member {
	var ms []raftnode.Member
	for i := range c.names {
		ms = append(ms, raftnode.Member{ID: MemberID(c.names[i]), Name: c.names[i], Address: c.addrs[i]})
	}
	return ms
}

func (c *grpcCluster) start(b testing.TB, i int, tick time.Duration) {
	if c.lis[i] == nil {
		l, err := net.Listen("tcp", c.addrs[i])
		if err != nil {
			b.Fatal(err)
		}
		c.lis[i] = l
	}
	c.nodes[i] = startNodeOn(b, c.dirs[i], c.lis[i], func(cfg *Config) {
		cfg.NodeID, cfg.MemberID, cfg.ClusterID = c.names[i], MemberID(c.names[i]), 9
		cfg.AdvertiseAddress = c.addrs[i]
		cfg.Raft.Peers = c.members()
		cfg.Raft.TickInterval = tick
	})
	c.lis[i] = nil
}

func (c *grpcCluster) leader() int {
	for i, n := range c.nodes {
		if n != nil && n.srv.Node().Status().State == 2 {
			return i
		}
	}
	return -1
}

func (c *grpcCluster) waitLeader(b testing.TB) int {
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if l := c.leader(); l >= 0 {
			return l
		}
	}
	b.Fatal("no leader")
	return -1
}

// BenchmarkCluster: 100 clients on 10 connections against a 3-node
// cluster, 256-byte values. Writes go to the leader; linearizable reads
// are spread over all three nodes.
//
//	go test -run='^$' -bench=Cluster -benchtime=40000x -count=3 ./internal/service/
func BenchmarkCluster(b *testing.B) {
	value := make([]byte, 256)
	b.Run("Write", func(b *testing.B) {
		c := startGRPCCluster(b, 100*time.Millisecond)
		l := c.waitLeader(b)
		runClients(b, c.nodes[l].addr, func(ctx context.Context, cl kvdbv1.KVServiceClient, i int) error {
			_, err := cl.Put(ctx, &kvdbv1.PutRequest{Key: []byte(fmt.Sprintf("key-%06d", i%100_000)), Value: value})
			return err
		})
	})
	b.Run("ReadLinearizable", func(b *testing.B) {
		c := startGRPCCluster(b, 100*time.Millisecond)
		l := c.waitLeader(b)
		preload(b, c.nodes[l], value)
		for _, n := range c.nodes {
			waitApplied(b, n, c.nodes[l].srv.Node().Status().Commit)
		}
		var addrs []string
		for _, n := range c.nodes {
			addrs = append(addrs, n.addr)
		}
		runClientsOn(b, addrs, func(ctx context.Context, cl kvdbv1.KVServiceClient, i int) error {
			_, err := cl.Get(ctx, &kvdbv1.GetRequest{Key: []byte(fmt.Sprintf("key-%06d", i%10_000))})
			return err
		})
	})
	b.Run("Batch", func(b *testing.B) {
		// Ops per second when each request is a batch of 100 puts.
		c := startGRPCCluster(b, 100*time.Millisecond)
		l := c.waitLeader(b)
		start := time.Now()
		runClients(b, c.nodes[l].addr, func(ctx context.Context, cl kvdbv1.KVServiceClient, i int) error {
			req := &kvdbv1.BatchRequest{}
			for j := 0; j < 100; j++ {
				req.Ops = append(req.Ops, &kvdbv1.BatchOp{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: []byte(fmt.Sprintf("key-%06d", (i*100+j)%100_000)), Value: value}}})
			}
			_, err := cl.Batch(ctx, req)
			return err
		})
		b.ReportMetric(float64(b.N*100)/time.Since(start).Seconds(), "puts/s")
	})
}

func waitApplied(b testing.TB, n *testNode, index uint64) {
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if n.srv.Node().Status().Applied >= index {
			return
		}
	}
	b.Fatal("node did not catch up")
}

// BenchmarkFailover measures, with production timing (100 ms ticks, 1 s
// election timeout), the time from killing the leader to the first write
// acknowledged by the survivors. Reports the median of b.N kills.
//
//	go test -run='^$' -bench=Failover -benchtime=10x ./internal/service/
func BenchmarkFailover(b *testing.B) {
	c := startGRPCCluster(b, 100*time.Millisecond)
	var times []time.Duration
	for i := 0; i < b.N; i++ {
		l := c.waitLeader(b)
		// Everyone must be caught up, or the restarted node of the last
		// round could be the only candidate missing entries.
		for _, n := range c.nodes {
			waitApplied(b, n, c.nodes[l].srv.Node().Status().Commit)
		}
		other := c.nodes[(l+1)%3]
		killed := time.Now()
		if err := c.nodes[l].srv.Kill(); err != nil {
			b.Fatal(err)
		}
		<-c.nodes[l].done
		c.nodes[l].srv = nil
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			_, err := other.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte("failover"), Value: []byte(fmt.Sprint(i))})
			cancel()
			if err == nil {
				break
			}
			if time.Since(killed) > 20*time.Second {
				b.Fatalf("no write accepted 20s after the leader was killed: %v", err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		times = append(times, time.Since(killed))
		c.nodes[l].conn.Close()
		c.start(b, l, 100*time.Millisecond)
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Milliseconds()), "median-ms")
	b.ReportMetric(float64(times[len(times)-1].Milliseconds()), "max-ms")
}
