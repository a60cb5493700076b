package service

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/wire"
)

// TestWritesDuringShutdownAreAnswered: writes that arrive on both
// transports while the node hands off and drains are either applied or
// refused; none is left queued to run into its (long) deadline.
func TestWritesDuringShutdownAreAnswered(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	raw := dialRaw(t, n.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[codes.Code]int{}
	stop := make(chan struct{})
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: fmt.Appendf(nil, "w%d-%d", w, i), Value: []byte("v")})
				mu.Lock()
				got[Code(err)]++
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	// A pipelined burst on the binary protocol, sent just before shutdown.
	var burst []byte
	for i := range 200 {
		burst = wire.AppendRequest(burst, &wire.Request{Op: wire.OpPut, ID: uint64(i + 1), Key: fmt.Appendf(nil, "b%d", i), Value: []byte("v")})
	}
	// Shut down once writes are flowing.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		mu.Lock()
		ok := got[codes.OK]
		mu.Unlock()
		if ok >= 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes did not start: %v", got)
		}
	}
	raw.write(burst)
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	if err := n.srv.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	close(stop)
	wg.Wait()
	if got[codes.DeadlineExceeded] > 0 {
		t.Fatalf("writes ran into their deadline during shutdown: %v", got)
	}
	for c := range got {
		if c != codes.OK && c != codes.Unavailable && c != codes.Canceled {
			t.Fatalf("unexpected outcome %v during shutdown: %v", c, got)
		}
	}
	// Every binary reply that came back before the close is a success or
	// UNAVAILABLE.
	_ = raw.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		resp, err := raw.next()
		if err != nil {
			break
		}
		if resp.Status != wire.StatusOK && resp.Status != wire.StatusUnavailable {
			t.Fatalf("binary put %d during shutdown: %v %s", resp.ID, resp.Status, resp.Payload)
		}
	}
	t.Logf("gRPC outcomes: %v", got)
	n.srv = nil // already shut down
}
