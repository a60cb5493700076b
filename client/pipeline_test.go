package client

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
)

func TestPipeline(t *testing.T) {
	_, addr := startNode(t)
	for _, proto := range []Protocol{ProtocolGRPC, ProtocolBinary} {
		t.Run(fmt.Sprint(proto), func(t *testing.T) {
			ctx := ctxT(t)
			c, err := New(ctx, Options{Endpoints: []string{addr}, Protocol: proto, PoolSize: 3})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			prefix := fmt.Sprintf("pipe%d/", proto)
			key := func(i int) []byte { return fmt.Appendf(nil, "%s%03d", prefix, i) }
			p := c.Pipeline()

			// A window of puts: queued, not written, until Flush.
			var puts []PutFuture
			for i := range 100 {
				puts = append(puts, p.PutAsync(ctx, key(i), fmt.Appendf(nil, "v%d", i)))
			}
			if proto == ProtocolBinary {
				b := p.conn
				b.mu.Lock()
				queued, pending := len(b.wbuf), len(b.pending)
				b.mu.Unlock()
				if queued == 0 || pending != 100 {
					t.Fatalf("before Flush: %d bytes buffered, %d pending; want the window held back", queued, pending)
				}
			}
			p.Flush()
			// On one binary connection the window is applied in order; gRPC
			// calls run side by side.
			var last int64
			for i, f := range puts {
				rev, err := f.Wait(ctx)
				if err != nil || rev <= 0 || (proto == ProtocolBinary && rev <= last) {
					t.Fatalf("put %d: revision %d after %d, %v", i, rev, last, err)
				}
				last = rev
			}

			// Gets and deletes mixed in one window, answered in order.
			var gets []GetFuture
			var dels []DeleteFuture
			for i := range 50 {
				gets = append(gets, p.GetAsync(ctx, key(i)))
				dels = append(dels, p.DeleteAsync(ctx, key(i+50)))
			}
			p.Flush()
			for i := range 50 {
				kv, err := gets[i].Wait(ctx)
				if err != nil || string(kv.Value) != fmt.Sprintf("v%d", i) {
					t.Fatalf("get %d: %+v, %v", i, kv, err)
				}
				if n, err := dels[i].Wait(ctx); err != nil || n != 1 {
					t.Fatalf("delete %d: %d, %v", i+50, n, err)
				}
			}

			// Waiting for a request never flushed writes it: no hang.
			f := p.GetAsync(ctx, key(7), Serializable())
			if kv, err := f.Wait(ctx); err != nil || string(kv.Value) != "v7" {
				t.Fatalf("unflushed get: %+v, %v", kv, err)
			}
			if _, err := p.GetAsync(ctx, key(99)).Wait(ctx); err == nil {
				t.Fatal("get of a deleted key: no error")
			}
			p.Flush()

			if proto == ProtocolBinary {
				// Each window took the pool's next connection.
				pl, _ := c.current()
				for i, b := range pl.binary {
					if b == nil || b.nextID == 0 {
						t.Fatalf("pooled connection %d never carried a window", i)
					}
				}
			}

			// A closed client fails the pipeline's requests at once.
			c.Close()
			if _, err := p.GetAsync(ctx, key(1)).Wait(ctx); err == nil {
				t.Fatal("get after Close: no error")
			}
		})
	}
}

// TestAbandonedGRPCFuture: a gRPC asynchronous call whose waiter gives up
// (its context ends) still completes on its own goroutine; the Future is
// not handed to another call meanwhile, so later calls get their own
// replies (and -race sees no write to a reused Future).
func TestAbandonedGRPCFuture(t *testing.T) {
	_, addr := startNode(t)
	ctx := ctxT(t)
	c, err := New(ctx, Options{Endpoints: []string{addr}, Protocol: ProtocolGRPC, PoolSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	gone, cancel := context.WithCancel(ctx)
	cancel()
	for i := range 100 {
		key := fmt.Appendf(nil, "ab/%d", i)
		waits := []func() error{
			func() error { return c.PutAsync(ctx, key, key).Err(gone) },
			func() error { _, err := c.PutAsync(ctx, key, key).Wait(gone); return err },
			func() error { _, err := c.DeleteAsync(ctx, key).Wait(gone); return err },
			func() error { _, err := c.GetAsync(ctx, key).Wait(gone); return err },
		}
		// A wait may also see the call's own answer, when it came before
		// the wait looked at its context: the Get's key was never written.
		if err := waits[i%len(waits)](); err != nil && !errors.Is(err, context.Canceled) && Code(err) != codes.NotFound {
			t.Fatalf("wait: %v", err)
		}
		// The abandoned call still runs: check another key.
		checked, want := fmt.Appendf(nil, "ab/checked/%d", i), fmt.Appendf(nil, "v%d", i)
		if _, err := c.Put(ctx, checked, want); err != nil {
			t.Fatal(err)
		}
		kv, err := c.GetAsync(ctx, checked).Wait(ctx)
		if err != nil || string(kv.Value) != string(want) {
			t.Fatalf("GetAsync after an abandoned call = %q, %v; want %q", kv.Value, err, want)
		}
	}
}
