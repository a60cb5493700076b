package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/engine"
)

const (
	evictTestValue = 100
	evictTestKey   = 16
)

// evictTestGrowth is one test put's logical size: the most one request of
// these tests adds to memory_usage.
var evictTestGrowth = engine.EntryGrowth(evictTestKey, evictTestValue)

func evictTestKeyName(i int) []byte { return fmt.Appendf(nil, "key/%012d", i) }

// putRetrying writes one key, retrying (boundedly) while the node answers
// RESOURCE_EXHAUSTED because eviction is behind. It returns how many
// attempts were rejected.
func putRetrying(ctx context.Context, kv kvdbv1.KVServiceClient, key, value []byte) (rejected int, err error) {
	for range 200 {
		_, err = kv.Put(ctx, &kvdbv1.PutRequest{Key: key, Value: value})
		if status.Code(err) != codes.ResourceExhausted {
			return rejected, err
		}
		rejected++
		time.Sleep(5 * time.Millisecond)
	}
	return rejected, err
}

// sampleMemory records the largest MemoryUsage of every store until stop
// is closed.
func sampleMemory(stores func() []*engine.Store, stop <-chan struct{}) (maxSeen func() int64) {
	var peak atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			for _, s := range stores() {
				if m := s.MemoryUsage(); m > peak.Load() {
					peak.Store(m)
				}
			}
			select {
			case <-stop:
				return
			default:
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	return func() int64 { <-done; return peak.Load() }
}

// TestEvictionKeepsMemoryUnderLimit writes three times max-memory through
// many clients and samples memory_usage all along: with allkeys-lru it never
// exceeds the limit by more than one request's size.
func TestEvictionKeepsMemoryUnderLimit(t *testing.T) {
	const limit = 128 << 10
	n := startNode(t, t.TempDir(), func(c *Config) { c.MaxMemory = limit })
	ctx := ctxT(t)

	stop := make(chan struct{})
	peak := sampleMemory(func() []*engine.Store { return []*engine.Store{n.srv.Store()} }, stop)
	total := int(3 * limit / evictTestGrowth)
	const workers = 8
	var wg sync.WaitGroup
	var rejected atomic.Int64
	errs := make(chan error, workers)
	val := make([]byte, evictTestValue)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += workers {
				r, err := putRetrying(ctx, n.kv, evictTestKeyName(i), val)
				rejected.Add(int64(r))
				if err != nil {
					errs <- fmt.Errorf("put %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	maxMem := peak()
	st, err := n.admin.Stats(ctx, &kvdbv1.StatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	sg := st.GetStorage()
	t.Logf("%d puts of %d B; peak memory_usage %d (limit %d), now %d with %d keys; evicted %d; %d puts rejected and retried",
		total, evictTestGrowth, maxMem, limit, sg.GetMemoryUsage(), sg.GetKeys(), sg.GetEvictedKeys(), rejected.Load())
	if maxMem > limit+evictTestGrowth {
		t.Errorf("memory_usage reached %d, more than one request (%d B) over the limit %d", maxMem, evictTestGrowth, limit)
	}
	if sg.GetEvictedKeys() < int64(total)-sg.GetKeys() {
		t.Errorf("evicted_keys %d, but %d of %d keys are gone", sg.GetEvictedKeys(), int64(total)-sg.GetKeys(), total)
	}
	if sg.GetEvictionPolicy() != string(EvictAllKeysLRU) || sg.GetMaxMemory() != limit {
		t.Errorf("STATS policy %q max_memory %d", sg.GetEvictionPolicy(), sg.GetMaxMemory())
	}
}

// TestNoEvictionRejectsWrites fills a noeviction node: the write that would
// pass the limit fails with RESOURCE_EXHAUSTED, every earlier key reads
// back, and a delete makes room again.
func TestNoEvictionRejectsWrites(t *testing.T) {
	const limit = 64 << 10
	n := noEvictionNode(t, limit)
	ctx := ctxT(t)
	val := make([]byte, evictTestValue)
	stored := 0
	var err error
	for i := range int(2 * limit / evictTestGrowth) {
		if _, err = n.kv.Put(ctx, &kvdbv1.PutRequest{Key: evictTestKeyName(i), Value: val}); err != nil {
			break
		}
		stored++
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("after %d puts: err %v, want RESOURCE_EXHAUSTED", stored, err)
	}
	if want := int(limit / evictTestGrowth); stored != want {
		t.Errorf("stored %d keys before the limit, want %d", stored, want)
	}
	// Batches are admitted by the same rule; deletes always are.
	_, err = n.kv.Batch(ctx, &kvdbv1.BatchRequest{Ops: []*kvdbv1.BatchOp{{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: []byte("b"), Value: val}}}}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("batch past the limit: %v, want RESOURCE_EXHAUSTED", err)
	}
	for i := range stored {
		r, err := n.kv.Get(ctx, &kvdbv1.GetRequest{Key: evictTestKeyName(i)})
		if err != nil || len(r.GetKv().GetValue()) != evictTestValue {
			t.Fatalf("key %d lost: %v", i, err)
		}
	}
	if mem := n.srv.Store().MemoryUsage(); mem > limit {
		t.Errorf("memory_usage %d over the limit %d", mem, limit)
	}
	if got := n.srv.Store().EvictedKeys(); got != 0 {
		t.Errorf("noeviction evicted %d keys", got)
	}
	if _, err := n.kv.Delete(ctx, &kvdbv1.DeleteRequest{Key: evictTestKeyName(0)}); err != nil {
		t.Fatalf("delete at the limit: %v", err)
	}
	if _, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte("after-delete"), Value: val}); err != nil {
		t.Errorf("put after a delete made room: %v", err)
	}
}

// TestClusterEvictionReplicasIdentical evicts heavily on a three-node
// cluster, writing through every node, then kills the leader while writes
// and evictions are in flight: the new leader goes on evicting, and after
// the old leader rejoins all three hold exactly the same keys.
func TestClusterEvictionReplicasIdentical(t *testing.T) {
	const limit = 64 << 10
	c := newCluster(t, 3, func(cfg *Config) { cfg.MaxMemory = limit })
	stores := func() []*engine.Store {
		c.mu.Lock()
		defer c.mu.Unlock()
		var out []*engine.Store
		for _, n := range c.nodes {
			if n != nil && n.srv != nil {
				out = append(out, n.srv.Store())
			}
		}
		return out
	}
	val := make([]byte, evictTestValue)
	perRound := int(3 * limit / evictTestGrowth)
	write := func(first int, through func(i int) int) error {
		const workers = 6
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := first + w; i < first+perRound; i += workers {
					var err error
					// A node may be down or electing (a leader was killed):
					// try the next, for as long as an election can take on
					// a loaded machine.
					for until := time.Now().Add(15 * time.Second); time.Now().Before(until); {
						kv := c.kv(through(i))
						if kv == nil {
							i++
							continue
						}
						ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
						_, err = putRetrying(ctx, kv, evictTestKeyName(i), val)
						cancel()
						if err == nil || status.Code(err) == codes.ResourceExhausted {
							break
						}
						time.Sleep(20 * time.Millisecond)
					}
					if err != nil && status.Code(err) != codes.ResourceExhausted && !errors.Is(err, context.DeadlineExceeded) {
						errs <- fmt.Errorf("put %d: %w", i, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	}

	// Round 1: heavy eviction, writes spread over all three nodes.
	stop := make(chan struct{})
	peak := sampleMemory(stores, stop)
	if err := write(0, func(i int) int { return i % 3 }); err != nil {
		t.Fatal(err)
	}
	close(stop)
	h1 := c.waitConverged()
	evicted := c.nodes[0].srv.Store().EvictedKeys()
	for i, n := range c.nodes {
		if got := n.srv.Store().EvictedKeys(); got != evicted || got == 0 {
			t.Errorf("node %d evicted %d keys, node 0 %d", i, got, evicted)
		}
	}
	t.Logf("round 1: %d puts, %d evicted on every node, hash %x, peak memory_usage %d (limit %d)",
		perRound, evicted, h1, peak(), limit)

	// Round 2: kill the leader while writes through it and the others
	// keep evictions going.
	l := c.waitLeader()
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		for c.nodes[l].srv.Store().EvictedKeys() < evicted+50 {
			time.Sleep(time.Millisecond)
		}
		c.kill(l)
	}()
	if err := write(perRound, func(i int) int { return i % 3 }); err != nil {
		t.Fatal(err)
	}
	<-killed
	nl := c.waitLeader()
	// The new leader keeps evicting: writes through it alone pass the
	// limit again.
	before := c.nodes[nl].srv.Store().EvictedKeys()
	stop = make(chan struct{})
	peak = sampleMemory(stores, stop)
	if err := write(2*perRound, func(int) int { return nl }); err != nil {
		t.Fatal(err)
	}
	close(stop)
	// Admission reserves room on the node that takes the write, so with
	// every write going through the leader no replica passes the limit
	// by more than one request. (Writes spread over several nodes are
	// admitted by each against its own view: see round 1's peak.)
	if p := peak(); p > limit+evictTestGrowth {
		t.Errorf("writes through the leader: memory_usage reached %d, limit %d", p, limit)
	}
	if after := c.nodes[nl].srv.Store().EvictedKeys(); after == before {
		t.Errorf("new leader evicted nothing (%d before and after)", before)
	}
	c.start(l)
	h2 := c.waitConverged()
	for i, n := range c.nodes {
		if mem := n.srv.Store().MemoryUsage(); mem > limit+evictTestGrowth {
			t.Errorf("node %d memory_usage %d over limit %d", i, mem, limit)
		}
	}
	t.Logf("round 2: leader %s killed mid-eviction, new leader %s; replicas converged at hash %x with %d keys",
		c.names[l], c.names[nl], h2, c.nodes[0].srv.Store().Len())
}

// noEvictionNode starts a node that refuses writes past limit bytes.
func noEvictionNode(t *testing.T, limit int64) *testNode {
	t.Helper()
	return startNode(t, t.TempDir(), func(c *Config) {
		c.MaxMemory = limit
		c.EvictionPolicy = EvictNone
	})
}

// TestLeasesAdmittedAgainstMaxMemory: a lease takes memory as a key does
// (engine.LeaseOverhead), so under noeviction granting leases stops with
// RESOURCE_EXHAUSTED at the limit, and a revoke makes room again.
func TestLeasesAdmittedAgainstMaxMemory(t *testing.T) {
	const limit = 16 << 10
	n := noEvictionNode(t, limit)
	ctx := ctxT(t)
	leases := kvdbv1.NewLeaseServiceClient(n.conn)
	var granted []int64
	var err error
	for range 2 * limit / engine.LeaseOverhead {
		var g *kvdbv1.LeaseGrantResponse
		if g, err = leases.LeaseGrant(ctx, &kvdbv1.LeaseGrantRequest{Ttl: 600}); err != nil {
			break
		}
		granted = append(granted, g.GetId())
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("after %d leases: err %v, want RESOURCE_EXHAUSTED", len(granted), err)
	}
	if want := limit / engine.LeaseOverhead; len(granted) != want {
		t.Errorf("granted %d leases under %d bytes, want %d", len(granted), limit, want)
	}
	if _, err := leases.LeaseRevoke(ctx, &kvdbv1.LeaseRevokeRequest{Id: granted[0]}); err != nil {
		t.Fatal(err)
	}
	if _, err := leases.LeaseGrant(ctx, &kvdbv1.LeaseGrantRequest{Ttl: 600}); err != nil {
		t.Fatalf("a grant after a revoke: %v", err)
	}
}
