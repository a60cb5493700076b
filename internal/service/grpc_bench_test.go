package service

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// The gRPC benchmarks drive a node with the client shape of the issue's
// targets: 100 concurrent clients over 10 connections. Each reports ops/s
// and p50/p99 latency besides ns/op. Run them with
//
//	go test -run='^$' -bench=GRPC -benchtime=20000x -count=3 ./internal/service/
//
// Ceiling is a gRPC server whose Get returns a constant: the most this
// client shape can get from gRPC on the machine, measured in the same run.
const (
	benchClients = 100
	benchConns   = 10
)

type constKV struct {
	kvdbv1.UnimplementedKVServiceServer
}

func (constKV) Get(context.Context, *kvdbv1.GetRequest) (*kvdbv1.GetResponse, error) {
	return &kvdbv1.GetResponse{Header: &kvdbv1.ResponseHeader{}, Kv: &kvdbv1.KeyValue{Key: []byte("k"), Value: []byte("v")}}, nil
}

func BenchmarkGRPC(b *testing.B) {
	value := make([]byte, 100)
	b.Run("Ceiling", func(b *testing.B) {
		lis, _ := net.Listen("tcp", "127.0.0.1:0")
		s := grpc.NewServer()
		kvdbv1.RegisterKVServiceServer(s, constKV{})
		go s.Serve(lis)
		defer s.Stop()
		runClients(b, lis.Addr().String(), func(ctx context.Context, c kvdbv1.KVServiceClient, i int) error {
			_, err := c.Get(ctx, &kvdbv1.GetRequest{Key: []byte("k")})
			return err
		})
	})
	for _, sync := range []bool{false, true} {
		b.Run(fmt.Sprintf("Put/sync=%v", sync), func(b *testing.B) {
			n := benchNode(b, sync)
			syncs := n.srv.Node().Stats().WALSyncs
			runClients(b, n.addr, func(ctx context.Context, c kvdbv1.KVServiceClient, i int) error {
				_, err := c.Put(ctx, &kvdbv1.PutRequest{Key: []byte(fmt.Sprintf("key-%06d", i%100_000)), Value: value})
				return err
			})
			if sync {
				// Group commit: how many acknowledged writes one fsync covered.
				b.ReportMetric(float64(b.N)/float64(max(1, n.srv.Node().Stats().WALSyncs-syncs)), "writes/fsync")
			}
		})
	}
	b.Run("Get/linearizable", func(b *testing.B) {
		n := benchNode(b, false)
		preload(b, n, value)
		runClients(b, n.addr, func(ctx context.Context, c kvdbv1.KVServiceClient, i int) error {
			_, err := c.Get(ctx, &kvdbv1.GetRequest{Key: []byte(fmt.Sprintf("key-%06d", i%10_000))})
			return err
		})
	})
	b.Run("Get/serializable", func(b *testing.B) {
		n := benchNode(b, false)
		preload(b, n, value)
		runClients(b, n.addr, func(ctx context.Context, c kvdbv1.KVServiceClient, i int) error {
			_, err := c.Get(ctx, &kvdbv1.GetRequest{Key: []byte(fmt.Sprintf("key-%06d", i%10_000)), Consistency: kvdbv1.Consistency_CONSISTENCY_SERIALIZABLE})
			return err
		})
	})
}

func benchNode(b *testing.B, syncWrites bool) *testNode {
	b.Helper()
	return startNodeTB(b, b.TempDir(), func(c *Config) { c.Raft.SyncWrites = syncWrites; c.Raft.TickInterval = 0 }, true)
}

func preload(b *testing.B, n *testNode, value []byte) {
	b.Helper()
	ctx := context.Background()
	for i := 0; i < 10_000; i += 1000 {
		req := &kvdbv1.BatchRequest{}
		for j := i; j < i+1000; j++ {
			req.Ops = append(req.Ops, &kvdbv1.BatchOp{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: []byte(fmt.Sprintf("key-%06d", j)), Value: value}}})
		}
		if _, err := n.kv.Batch(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// runClients splits b.N calls over benchClients goroutines sharing
// benchConns connections and reports throughput and latency percentiles.
func runClients(b *testing.B, addr string, call func(context.Context, kvdbv1.KVServiceClient, int) error) {
	runClientsOn(b, []string{addr}, call)
}

// runClientsOn spreads the connections over addrs.
func runClientsOn(b *testing.B, addrs []string, call func(context.Context, kvdbv1.KVServiceClient, int) error) {
	b.Helper()
	clients := make([]kvdbv1.KVServiceClient, benchConns)
	for i := range clients {
		conn, err := grpc.NewClient(addrs[i%len(addrs)], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		clients[i] = kvdbv1.NewKVServiceClient(conn)
		if err := call(context.Background(), clients[i], 0); err != nil {
			b.Fatal(err)
		}
	}
	driveCalls(b, benchClients, func(ctx context.Context, g, i int) error {
		return call(ctx, clients[g%benchConns], i)
	})
}

// driveCalls runs b.N calls spread over goroutines, each goroutine calling
// one after another, and reports throughput and latency percentiles.
func driveCalls(b *testing.B, goroutines int, call func(ctx context.Context, g, i int) error) {
	b.Helper()
	var next atomic.Int64
	lat := make([][]time.Duration, goroutines)
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ResetTimer()
	start := time.Now()
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for {
				i := int(next.Add(1))
				if i > b.N {
					return
				}
				t0 := time.Now()
				if err := call(ctx, g, i); err != nil {
					failed.Store(err)
					return
				}
				lat[g] = append(lat[g], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	reportLatencies(b, lat, elapsed)
}

// reportLatencies reports b.N/elapsed as ops/s and the p50/p99 of lat.
func reportLatencies(b *testing.B, lat [][]time.Duration, elapsed time.Duration) {
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
}
