package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// TestCrashKeepsAcknowledgedWrites runs 20 rounds of: start the server with
// -sync-writes=true, write from several clients, kill -9 it mid-write,
// restart. Every write the server acknowledged must be readable afterwards
// (a key's value never goes back to an older one) and the store revision
// never goes back.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	rounds := 20
	if testing.Short() {
		rounds = 3
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	const writers, keysPerWriter = 8, 16
	// acked[w][k] is the highest sequence number acknowledged for key k of
	// writer w; writers only ever write increasing sequences.
	var (
		mu       sync.Mutex
		acked    [writers][keysPerWriter]int
		seq      [writers]int
		maxRev   int64
		totalAck int
	)
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < rounds; round++ {
		p := startServer(t, addr, dir, "-sync-writes=true")
		kv, _ := dial(t, addr)
		verify(t, round, kv, &acked, maxRev)

		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for ctx.Err() == nil {
					mu.Lock()
					seq[w]++
					s := seq[w]
					mu.Unlock()
					k := s % keysPerWriter
					rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
					resp, err := kv.Put(rctx, &kvdbv1.PutRequest{Key: key(w, k), Value: []byte(strconv.Itoa(s))})
					rcancel()
					if err != nil {
						return // the server is being killed
					}
					mu.Lock()
					acked[w][k] = s
					totalAck++
					maxRev = max(maxRev, resp.GetHeader().GetRevision())
					mu.Unlock()
				}
			}(w)
		}
		time.Sleep(time.Duration(50+rng.IntN(200)) * time.Millisecond)
		p.kill()
		cancel()
		wg.Wait()
	}
	p := startServer(t, addr, dir, "-sync-writes=true")
	kv, _ := dial(t, addr)
	verify(t, rounds, kv, &acked, maxRev)
	if totalAck < rounds {
		t.Fatalf("only %d writes were acknowledged over %d rounds: the test did not exercise anything", totalAck, rounds)
	}
	t.Logf("%d rounds, %d acknowledged writes, final revision >= %d", rounds, totalAck, maxRev)
	if err := p.terminate(t); err != nil {
		t.Fatalf("graceful stop: %v\n%s", err, p.logs())
	}
}

func key(w, k int) []byte { return []byte(fmt.Sprintf("w%d-k%02d", w, k)) }

func verify(t *testing.T, round int, kv kvdbv1.KVServiceClient, acked *[8][16]int, maxRev int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for w := range acked {
		for k, want := range acked[w] {
			if want == 0 {
				continue
			}
			resp, err := kv.Get(ctx, &kvdbv1.GetRequest{Key: key(w, k)})
			if err != nil {
				t.Fatalf("round %d: key %s acknowledged at seq %d is unreadable: %v", round, key(w, k), want, err)
			}
			got, _ := strconv.Atoi(string(resp.GetKv().GetValue()))
			if got < want {
				t.Fatalf("round %d: key %s holds seq %d, but seq %d was acknowledged", round, key(w, k), got, want)
			}
		}
	}
	r, err := kv.Range(ctx, &kvdbv1.RangeRequest{Key: []byte("w"), Prefix: true, CountOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if rev := r.GetHeader().GetRevision(); rev < maxRev {
		t.Fatalf("round %d: store revision %d went back below acknowledged revision %d", round, rev, maxRev)
	}
}
