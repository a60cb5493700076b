package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	kvclient "github.com/kvdb/kvdb/client"
	"github.com/kvdb/kvdb/internal/clustertest"
	"github.com/kvdb/kvdb/internal/service/servicetest"
)

// TestKVDBDriver runs every workload briefly against a real node over both
// transports: no request may fail.
func TestKVDBDriver(t *testing.T) {
	addr := servicetest.Start(t, nil)
	ctx := context.Background()
	for _, proto := range []kvclient.Protocol{kvclient.ProtocolGRPC, kvclient.ProtocolBinary} {
		d, err := NewKVDB(ctx, []string{addr}, proto, 2, false, Security{})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.EnableTxn(); err != nil {
			t.Fatal(err)
		}
		for _, op := range []Op{OpPut, OpGet, OpDelete, OpMixed, OpBatch, OpTxn} {
			res, err := Run(ctx, d, Config{Op: op, Total: 200, Clients: 4, Pipeline: 4, Keys: 100, ValueSize: 32, KeyPrefix: "bt/"})
			if err != nil {
				t.Fatalf("proto %d op %s: %v", proto, op, err)
			}
			if res.Errors != 0 || res.Requests != 200 {
				t.Errorf("proto %d op %s: requests=%d errors=%v", proto, op, res.Requests, res.ErrorsByCode)
			}
		}
		d.Close()
	}
}

// countingDriver counts the puts, batches and transactions that succeed,
// and, once armed, those that succeed from then on.
type countingDriver struct {
	*KVDB
	armed       atomic.Bool
	ok, okAfter atomic.Int64
}

func (c *countingDriver) count(err error) error {
	if err == nil {
		c.ok.Add(1)
		if c.armed.Load() {
			c.okAfter.Add(1)
		}
	}
	return err
}

func (c *countingDriver) Put(ctx context.Context, key, value []byte) error {
	return c.count(c.KVDB.Put(ctx, key, value))
}

func (c *countingDriver) Batch(ctx context.Context, kvs []KV) error {
	return c.count(c.KVDB.Batch(ctx, kvs))
}

func (c *countingDriver) Txn(ctx context.Context, readKey, writeKey, value []byte) error {
	return c.count(c.KVDB.Txn(ctx, readKey, writeKey, value))
}

func (c *countingDriver) Pipeline() Pipe { return countingPipe{Pipe: c.KVDB.Pipeline(), c: c} }

type countingPipe struct {
	Pipe
	c *countingDriver
}

func (p countingPipe) PutAsync(ctx context.Context, key, value []byte) Waiter {
	return countingWaiter{Waiter: p.Pipe.PutAsync(ctx, key, value), c: p.c}
}

type countingWaiter struct {
	Waiter
	c *countingDriver
}

func (w countingWaiter) Wait(ctx context.Context) error { return w.c.count(w.Waiter.Wait(ctx)) }

// TestRunFollowsTheLeader: a run against every node of a cluster goes on
// on the new leader when the one it sends to stops, over both transports,
// pipelined or not, for writes, batches and transactions. Requests fail
// during the switch (counted as errors); requests succeed after it.
func TestRunFollowsTheLeader(t *testing.T) {
	tests := []struct {
		proto    kvclient.Protocol
		op       Op
		pipeline int
	}{
		{kvclient.ProtocolGRPC, OpPut, 1},
		{kvclient.ProtocolBinary, OpPut, 1},
		{kvclient.ProtocolBinary, OpPut, 8},
		{kvclient.ProtocolGRPC, OpPut, 8},
		{kvclient.ProtocolBinary, OpBatch, 1},
		{kvclient.ProtocolGRPC, OpTxn, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %s pipeline %d", map[kvclient.Protocol]string{kvclient.ProtocolGRPC: "grpc", kvclient.ProtocolBinary: "binary"}[tt.proto], tt.op, tt.pipeline), func(t *testing.T) {
			cl := clustertest.Start(t, 3)
			lead := cl.Leader()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			kv, err := NewKVDB(ctx, cl.Addrs, tt.proto, 2, false, Security{})
			if err != nil {
				t.Fatal(err)
			}
			defer kv.Close()
			if kv.c.Endpoint() != cl.Addrs[lead] {
				t.Fatalf("driver on %s, the leader is %s", kv.c.Endpoint(), cl.Addrs[lead])
			}
			if tt.op == OpTxn {
				if err := kv.EnableTxn(); err != nil {
					t.Fatal(err)
				}
			}
			d := &countingDriver{KVDB: kv}
			type outcome struct {
				res *Result
				err error
			}
			done := make(chan outcome, 1)
			go func() {
				res, err := Run(ctx, d, Config{Op: tt.op, Clients: 4, Pipeline: tt.pipeline, Keys: 100, ValueSize: 16,
					BatchSize: 10, KeyPrefix: "ft/", Duration: MaxDuration, NoPreload: true})
				done <- outcome{res, err}
			}()
			for i := 0; i < 2000 && d.ok.Load() < 20; i++ {
				time.Sleep(10 * time.Millisecond)
			}
			if d.ok.Load() < 20 {
				t.Fatalf("only %d requests succeeded before the leader stopped", d.ok.Load())
			}
			cl.Stop(lead)
			d.armed.Store(true)
			// More than the requests that can be in flight (4 clients ×
			// the pipeline) must succeed after the stop.
			want := int64(4*tt.pipeline + 50)
			for i := 0; i < 3000 && d.okAfter.Load() < want; i++ {
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			out := <-done
			if out.err == nil {
				t.Errorf("Run ended before it was cancelled: %+v", out.res)
			}
			if n := d.okAfter.Load(); n < want {
				t.Fatalf("%d requests succeeded after the leader stopped, want at least %d (driver on %s)", n, want, kv.c.Endpoint())
			}
			if kv.c.Endpoint() == cl.Addrs[lead] {
				t.Errorf("the driver still sends to the stopped node %s", kv.c.Endpoint())
			}
		})
	}
}
