package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	kvclient "github.com/kvdb/kvdb/client"
	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// watchStream is what one client watcher delivered.
type watchStream struct {
	name string
	mu   sync.Mutex
	revs []int64
	byRv map[int64]string // "key=value" of each put delivered
	err  error
	done bool // saw the end sentry
}

// TestWatchFailover: three processes; Go-client watchers starting on each
// node watch the whole write prefix from revision 1 while clients write
// through every node; the leader is killed with SIGKILL mid-load, then (once
// it is back) the node some watchers are on. Every write in the test is one
// put under the prefix, so each revision is one event: every watcher's
// stream, resumed by the client on other nodes, must be exactly revisions
// 1, 2, 3, ... (no gap, no duplicate), and hold every acknowledged write at
// the revision its answer named.
func TestWatchFailover(t *testing.T) {
	c := startProcCluster(t)
	leader := -1
	for deadline := time.Now().Add(10 * time.Second); leader < 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		leader = c.leader(t, -1)
	}
	if leader < 0 {
		t.Fatal("no leader")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var streams []*watchStream
	for i := range 3 {
		eps := []string{c.addrs[i], c.addrs[(i+1)%3], c.addrs[(i+2)%3]}
		cl, err := kvclient.New(ctx, kvclient.Options{Endpoints: eps, PoolSize: 1, BackoffMax: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for j := range 2 {
			s := &watchStream{name: fmt.Sprintf("watcher %d on %s", j, c.names[i]), byRv: map[int64]string{}}
			streams = append(streams, s)
			opts := []kvclient.WatchOption{kvclient.WithPrefix(), kvclient.WithRev(1)}
			if j == 1 {
				opts = append(opts, kvclient.WithPrevKV())
			}
			ch := cl.Watch(ctx, []byte("f/"), opts...)
			go func() {
				for r := range ch {
					s.mu.Lock()
					if r.Err != nil {
						s.err = r.Err
					}
					for _, e := range r.Events {
						s.revs = append(s.revs, e.KV.ModRevision)
						s.byRv[e.KV.ModRevision] = string(e.KV.Key) + "=" + string(e.KV.Value)
						if string(e.KV.Key) == "f/zz-end" {
							s.done = true
						}
					}
					s.mu.Unlock()
				}
			}()
		}
	}

	var (
		mu    sync.Mutex
		acked = map[int64]string{}
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	clients := make([]kvdbv1.KVServiceClient, 3)
	for i, a := range c.addrs {
		clients[i], _ = c.dial(t, a)
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for n := range 1_000_000 {
				select {
				case <-stop:
					return
				default:
				}
				k, v := fmt.Sprintf("f/w%d-%d", w, n%50), fmt.Sprint(n)
				cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
				r, err := clients[rng.IntN(3)].Put(cctx, &kvdbv1.PutRequest{Key: []byte(k), Value: []byte(v)})
				ccancel()
				if err == nil {
					mu.Lock()
					acked[r.GetHeader().GetRevision()] = k + "=" + v
					mu.Unlock()
				} else {
					time.Sleep(5 * time.Millisecond)
				}
			}
		}()
	}
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	// waitWrites waits (bounded) until n more writes are acknowledged.
	waitWrites := func(what string, n int) {
		before := ackedCount()
		for end := time.Now().Add(30 * time.Second); ackedCount() < before+n; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("%s: writes did not go on (%d acknowledged)", what, ackedCount())
			}
		}
	}
	waitWrites("before the kills", 300)

	// Kill -9 the leader mid-load; writes go on under a new leader.
	c.procs[leader].kill()
	t.Logf("killed the leader %s", c.names[leader])
	waitWrites("after killing the leader", 300)
	c.start(t, leader)
	c.procs[leader].waitReady(t)
	waitWrites("after restarting the old leader", 200)

	// Kill -9 a node watchers are on that is not the leader now.
	now := -1
	for end := time.Now().Add(10 * time.Second); now < 0 && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		now = c.leader(t, -1)
	}
	victim := (now + 1) % 3
	c.procs[victim].kill()
	t.Logf("killed %s (watched, not leading)", c.names[victim])
	waitWrites("after killing a follower", 300)
	c.start(t, victim)
	c.procs[victim].waitReady(t)
	waitWrites("after restarting the follower", 200)
	close(stop)
	wg.Wait()

	// The sentry: once every watcher has it, every stream is complete.
	var last int64
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r, err := clients[now].Put(ctx, &kvdbv1.PutRequest{Key: []byte("f/zz-end"), Value: []byte("end")})
		if err == nil {
			last = r.GetHeader().GetRevision()
			break
		}
		if time.Now().After(end) {
			t.Fatalf("sentry write: %v", err)
		}
	}
	for _, s := range streams {
		for end := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			s.mu.Lock()
			done, err := s.done, s.err
			s.mu.Unlock()
			if done || err != nil {
				break
			}
			if time.Now().After(end) {
				t.Fatalf("%s: no sentry 60 s after it was written", s.name)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range streams {
		s.mu.Lock()
		if s.err != nil {
			t.Errorf("%s: %v", s.name, s.err)
		}
		for i, rv := range s.revs {
			if rv != int64(i+1) {
				t.Errorf("%s: event %d is at revision %d, want %d (a gap or a duplicate)", s.name, i, rv, i+1)
				break
			}
		}
		if int64(len(s.revs)) < last {
			t.Errorf("%s: %d events, want %d", s.name, len(s.revs), last)
		}
		for rv, kv := range acked {
			if s.byRv[rv] != kv {
				t.Errorf("%s: acknowledged %s at revision %d, delivered %q", s.name, kv, rv, s.byRv[rv])
				break
			}
		}
		s.mu.Unlock()
	}
	t.Logf("%d revisions, %d acknowledged writes, %d streams checked", last, len(acked), len(streams))
}
