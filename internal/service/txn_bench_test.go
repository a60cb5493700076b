package service

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// Transaction benchmarks: 50 clients over 10 connections on one node
// (sync-writes=false). Run them with
//
//	go test -run='^$' -bench=Txn -benchtime=20000x -count=3 ./internal/service/
//
// Interactive is begin, 2 reads, 2 writes, commit (six round trips) on
// disjoint keys; CAS is one Execute; Contended is Interactive on 10 hot keys
// (one attempt per op: aborts are counted, not retried).
const txnBenchClients = 50

func BenchmarkTxn(b *testing.B) {
	value := make([]byte, 100)
	b.Run("Interactive", func(b *testing.B) {
		n := benchNode(b, false)
		preload(b, n, value)
		runTxnClients(b, n.addr, func(ctx context.Context, c kvdbv1.TxnServiceClient, i int) error {
			return readModifyWrite(ctx, c, fmt.Sprintf("key-%06d", (2*i)%10_000), fmt.Sprintf("key-%06d", (2*i+1)%10_000), value)
		})
	})
	b.Run("Contended", func(b *testing.B) {
		n := benchNode(b, false)
		preload(b, n, value)
		var aborts atomic.Int64
		runTxnClients(b, n.addr, func(ctx context.Context, c kvdbv1.TxnServiceClient, i int) error {
			err := readModifyWrite(ctx, c, fmt.Sprintf("key-%06d", i%10), fmt.Sprintf("key-%06d", (i+3)%10), value)
			if status.Code(err) == codes.Aborted {
				aborts.Add(1)
				return nil
			}
			return err
		})
		b.ReportMetric(100*float64(aborts.Load())/float64(b.N), "abort-%")
	})
	b.Run("ExecuteCAS", func(b *testing.B) {
		n := benchNode(b, false)
		preload(b, n, value)
		runTxnClients(b, n.addr, func(ctx context.Context, c kvdbv1.TxnServiceClient, i int) error {
			key := []byte(fmt.Sprintf("key-%06d", i%10_000))
			_, err := c.Execute(ctx, &kvdbv1.ExecuteRequest{
				Compares: []*kvdbv1.Compare{{Key: key, Operator: kvdbv1.CompareOperator_COMPARE_OPERATOR_GREATER, Operand: &kvdbv1.Compare_Version{Version: 0}}},
				Success:  []*kvdbv1.ExecuteOp{{Op: &kvdbv1.ExecuteOp_Put{Put: &kvdbv1.PutRequest{Key: key, Value: value}}}},
			})
			return err
		})
	})
}

func readModifyWrite(ctx context.Context, c kvdbv1.TxnServiceClient, k1, k2 string, value []byte) error {
	b, err := c.Begin(ctx, &kvdbv1.BeginRequest{})
	if err != nil {
		return err
	}
	id := b.GetTxnId()
	for _, k := range []string{k1, k2} {
		if _, err := c.Get(ctx, &kvdbv1.TxnServiceGetRequest{TxnId: id, Key: []byte(k)}); err != nil {
			return err
		}
	}
	for _, k := range []string{k1, k2} {
		if _, err := c.Put(ctx, &kvdbv1.TxnServicePutRequest{TxnId: id, Key: []byte(k), Value: value}); err != nil {
			return err
		}
	}
	_, err = c.Commit(ctx, &kvdbv1.CommitRequest{TxnId: id})
	return err
}

// runTxnClients is runClients for the TxnService with txnBenchClients
// clients; it reports txn/s and latency percentiles of whole calls.
func runTxnClients(b *testing.B, addr string, call func(context.Context, kvdbv1.TxnServiceClient, int) error) {
	b.Helper()
	clients := make([]kvdbv1.TxnServiceClient, benchConns)
	for i := range clients {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		clients[i] = kvdbv1.NewTxnServiceClient(conn)
	}
	driveCalls(b, txnBenchClients, func(ctx context.Context, g, i int) error {
		return call(ctx, clients[g%benchConns], i)
	})
}
