package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvclient "github.com/kvdb/kvdb/client"
	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// expiryWatch polls a cluster's keys under a prefix (linearizable ranges
// through any running node) and records, for each key, the read that first
// saw it gone: when it was sent (gone) and answered (goneBy); the server
// read between the two. Bounded: it stops when stop is closed or after
// limit.
type expiryWatch struct {
	mu     sync.Mutex
	gone   map[string]time.Time
	goneBy map[string]time.Time
	seen   map[string]bool
	putAt  map[string]time.Time // when the put of the key returned
}

// written records that key's put returned: a later read that misses it
// saw it gone.
func (w *expiryWatch) written(key string) {
	w.mu.Lock()
	w.seen[key], w.putAt[key] = true, time.Now()
	w.mu.Unlock()
}

func watchExpiry(t *testing.T, c *testCluster, prefix string, stop <-chan struct{}, limit time.Duration) (*expiryWatch, *sync.WaitGroup) {
	w := &expiryWatch{gone: map[string]time.Time{}, goneBy: map[string]time.Time{}, seen: map[string]bool{}, putAt: map[string]time.Time{}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		end := time.Now().Add(limit)
		for i := 0; time.Now().Before(end); i++ {
			select {
			case <-stop:
				return
			default:
			}
			kv := c.kv(i % len(c.nodes))
			if kv == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			before := time.Now()
			resp, err := kv.Range(ctx, &kvdbv1.RangeRequest{Key: []byte(prefix), Prefix: true, KeysOnly: true})
			cancel()
			after := time.Now()
			if err != nil {
				continue
			}
			present := map[string]bool{}
			for _, k := range resp.GetKvs() {
				present[string(k.GetKey())] = true
			}
			w.mu.Lock()
			for k := range present {
				w.seen[k] = true
			}
			for k := range w.seen {
				if _, done := w.gone[k]; !done && !present[k] && before.After(w.putAt[k]) {
					w.gone[k], w.goneBy[k] = before, after
				}
			}
			w.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return w, &wg
}

// TestTTLClusterExpiryDeterministicWithLeaderKill writes thousands of keys
// with TTLs (and keys on leases, and keys whose TTL a later put cleared) on
// three nodes, kills the leader in the middle of their expiry, and checks
// that no key disappeared before its deadline, that every expiring key
// went and every other stayed, and that the replicas' hashes are equal.
func TestTTLClusterExpiryDeterministicWithLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster for a few seconds")
	}
	c := newCluster(t, 3, nil)
	l := c.waitLeader()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leases := kvdbv1.NewLeaseServiceClient(c.nodes[l].conn)

	type want struct {
		earliest time.Time // the key may not disappear before this
		stays    bool
	}
	wants := map[string]want{}
	const ttlKeys, leaseKeys, plainKeys = 2000, 300, 200

	stop := make(chan struct{})
	watch, wg := watchExpiry(t, c, "ttl/", stop, 60*time.Second)
	w := watch
	defer func() { close(stop); wg.Wait() }()

	var mu sync.Mutex
	put := func(key string, req *kvdbv1.PutRequest, w want) error {
		start := time.Now()
		if _, err := c.nodes[l].kv.Put(ctx, req); err != nil {
			return err
		}
		if !w.stays && req.GetTtlMs() > 0 {
			w.earliest = start.Add(time.Duration(req.GetTtlMs()) * time.Millisecond)
		}
		mu.Lock()
		wants[key] = w
		mu.Unlock()
		if !w.stays {
			watch.written(key)
		}
		return nil
	}
	writeConcurrently(t, 8, ttlKeys, func(i int) error {
		key := fmt.Sprintf("ttl/k%05d", i)
		ttl := int64(300 + (i*7919)%2000)
		if i%10 != 0 {
			return put(key, &kvdbv1.PutRequest{Key: []byte(key), Value: []byte("v"), TtlMs: ttl}, want{})
		}
		// A put without a TTL clears the key's deadline: these stay.
		if err := put(key, &kvdbv1.PutRequest{Key: []byte(key), Value: []byte("v"), TtlMs: 60_000}, want{stays: true}); err != nil {
			return err
		}
		return put(key, &kvdbv1.PutRequest{Key: []byte(key), Value: []byte("again")}, want{stays: true})
	})
	grantStart := time.Now()
	g, err := leases.LeaseGrant(ctx, &kvdbv1.LeaseGrantRequest{Ttl: 3})
	if err != nil {
		t.Fatal(err)
	}
	writeConcurrently(t, 8, leaseKeys, func(i int) error {
		key := fmt.Sprintf("ttl/lease%04d", i)
		return put(key, &kvdbv1.PutRequest{Key: []byte(key), Value: []byte("v"), Lease: g.GetId()}, want{earliest: grantStart.Add(3 * time.Second)})
	})
	writeConcurrently(t, 8, plainKeys, func(i int) error {
		key := fmt.Sprintf("ttl/plain%04d", i)
		return put(key, &kvdbv1.PutRequest{Key: []byte(key), Value: []byte("v")}, want{stays: true})
	})

	// Kill the leader while the expirations run, then bring it back.
	time.Sleep(300 * time.Millisecond)
	c.kill(l)
	c.waitLeader()
	c.start(l)
	c.waitLeader()

	// Every expiring key goes (bounded wait), on every node.
	deadline := time.Now().Add(30 * time.Second)
	for {
		remaining := 0
		for _, n := range c.nodes {
			remaining += n.srv.Store().KeysWithDeadline() + len(n.srv.Store().Leases())
		}
		if remaining == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d keys with deadlines or leases remain", remaining)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.waitConverged()
	close(stop)
	wg.Wait()
	stop = make(chan struct{})

	store := c.nodes[c.waitLeader()].srv.Store()
	w.mu.Lock()
	defer w.mu.Unlock()
	for key, wt := range wants {
		_, present := store.Get([]byte(key))
		if wt.stays != present {
			t.Errorf("%s: present=%v, want %v", key, present, wt.stays)
		}
		if goneBy, ok := w.goneBy[key]; ok && !wt.stays && goneBy.Before(wt.earliest) {
			t.Errorf("%s disappeared %v before its deadline", key, wt.earliest.Sub(goneBy))
		}
		if _, ok := w.gone[key]; ok && wt.stays {
			t.Errorf("%s disappeared though it has no deadline", key)
		}
	}
	var expired uint64
	for _, n := range c.nodes {
		expired = max(expired, n.srv.Store().ExpiredKeys())
	}
	if expired == 0 {
		t.Error("no expiry counted")
	}
}

// TestTTLHealthyClusterExpiresPromptly checks the bound on a healthy
// cluster: no key outlives its deadline by more than a second, and none
// goes early.
func TestTTLHealthyClusterExpiresPromptly(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster for a few seconds")
	}
	c := newCluster(t, 3, nil)
	l := c.waitLeader()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stop := make(chan struct{})
	w, wg := watchExpiry(t, c, "h/", stop, 30*time.Second)
	earliest := map[string]time.Time{}
	for i := range 500 {
		ttl := time.Duration(100+i%900) * time.Millisecond
		key := fmt.Sprintf("h/%04d", i)
		start := time.Now()
		if _, err := c.nodes[l].kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte(key), Value: []byte("v"), TtlMs: ttl.Milliseconds()}); err != nil {
			t.Fatal(err)
		}
		w.written(key)
		earliest[key] = start.Add(ttl)
	}
	end := time.Now().Add(20 * time.Second)
	for c.nodes[l].srv.Store().KeysWithDeadline() > 0 && time.Now().Before(end) {
		time.Sleep(10 * time.Millisecond)
	}
	// The reader needs one more pass, on some node, to see the last
	// deletions: wait for it (boundedly) before stopping it.
	for time.Now().Before(end) {
		w.mu.Lock()
		n := len(w.gone)
		w.mu.Unlock()
		if n >= len(earliest) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	var worst time.Duration
	for key, e := range earliest {
		gone, ok := w.gone[key]
		if !ok {
			t.Errorf("%s never seen gone", key)
			continue
		}
		if goneBy := w.goneBy[key]; goneBy.Before(e) {
			t.Errorf("%s gone %v before its deadline", key, e.Sub(goneBy))
		}
		worst = max(worst, gone.Sub(e))
	}
	t.Logf("worst expiry lag seen by the reader: %v", worst)
	// The hiding is what readers see; the deletion itself must follow too.
	if n := c.nodes[l].srv.Store().KeysWithDeadline(); n > 0 {
		t.Errorf("%d keys not deleted", n)
	}
	if worst > time.Second {
		t.Errorf("a key outlived its deadline by %v (over 1s)", worst)
	}
}

// keepAliveOnce renews lease id through node i's LeaseKeepAlive stream.
func keepAliveOnce(ctx context.Context, n *testNode, id int64) (int64, error) {
	s, err := kvdbv1.NewLeaseServiceClient(n.conn).LeaseKeepAlive(ctx)
	if err != nil {
		return 0, err
	}
	if err := s.Send(&kvdbv1.LeaseKeepAliveRequest{Id: id}); err != nil {
		return 0, err
	}
	r, err := s.Recv()
	_ = s.CloseSend()
	if err != nil {
		return 0, err
	}
	return r.GetTtl(), nil
}

// TestLeaseKeepAliveAcrossLeaderChange keeps a lease alive through a
// leader kill and checks its key outlives several TTLs; then stops keeping
// it alive and checks the key goes.
func TestLeaseKeepAliveAcrossLeaderChange(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster for a few seconds")
	}
	c := newCluster(t, 3, nil)
	l := c.waitLeader()
	ctx := ctxT(t)
	g, err := kvdbv1.NewLeaseServiceClient(c.nodes[l].conn).LeaseGrant(ctx, &kvdbv1.LeaseGrantRequest{Ttl: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.nodes[l].kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte("session"), Value: []byte("v"), Lease: g.GetId()}); err != nil {
		t.Fatal(err)
	}
	killed := false
	for i := range 40 { // 4 s of keep-alives every 100 ms: four TTLs
		lead := c.leader()
		if lead >= 0 {
			if _, err := keepAliveOnce(ctx, c.nodes[lead], g.GetId()); err != nil {
				t.Logf("keep-alive %d: %v", i, err)
			}
		}
		if i == 10 && !killed {
			c.kill(l)
			killed = true
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.start(l)
	lead := c.waitLeader()
	if _, err := c.nodes[lead].kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte("session")}); err != nil {
		t.Fatalf("the kept-alive lease's key: %v", err)
	}
	// A follower refuses to renew and names the leader.
	f := (lead + 1) % 3
	if _, err := keepAliveOnce(ctx, c.nodes[f], g.GetId()); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("keep-alive on a follower: %v, want FailedPrecondition", err)
	}
	// Stop keeping it alive: the lease and its key go.
	end := time.Now().Add(15 * time.Second)
	for {
		_, err := c.nodes[lead].kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte("session")})
		if status.Code(err) == codes.NotFound {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the abandoned lease's key is still there: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The key is hidden from the moment the lease's deadline passes; the
	// revoke follows.
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ttl, err := kvdbv1.NewLeaseServiceClient(c.nodes[lead].conn).LeaseTimeToLive(ctx, &kvdbv1.LeaseTimeToLiveRequest{Id: g.GetId()})
		if err == nil && ttl.GetTtl() == -1 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("time-to-live of the expired lease: %v %v", ttl, err)
		}
	}
	if ttl, err := keepAliveOnce(ctx, c.nodes[lead], g.GetId()); err != nil || ttl != 0 {
		t.Fatalf("keep-alive of a revoked lease: ttl %d, %v (want 0: gone)", ttl, err)
	}
	c.waitConverged()
}

// TestTTLSurvivesRestartAndSnapshot restarts a node and catches a
// follower up by snapshot, and checks deadlines and leases are kept.
func TestTTLSurvivesRestartAndSnapshot(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.Raft.SnapshotCount = 100
		cfg.Raft.SnapshotCatchUpEntries = 20
	})
	l := c.waitLeader()
	ctx := ctxT(t)
	f := (l + 1) % 3
	c.kill(f)
	g, err := kvdbv1.NewLeaseServiceClient(c.nodes[l].conn).LeaseGrant(ctx, &kvdbv1.LeaseGrantRequest{Ttl: 3600})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.nodes[l].kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte("leased"), Value: []byte("v"), Lease: g.GetId()}); err != nil {
		t.Fatal(err)
	}
	r, err := c.nodes[l].kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte("ttl"), Value: []byte("v"), TtlMs: time.Hour.Milliseconds()})
	if err != nil || r == nil {
		t.Fatal(err)
	}
	get, err := c.nodes[l].kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte("ttl")})
	if err != nil {
		t.Fatal(err)
	}
	dl := get.GetKv().GetDeadlineMs()
	if dl == 0 {
		t.Fatal("no deadline on the key")
	}
	for i := range 300 {
		if err := c.put(l, fmt.Sprintf("fill-%d", i%20), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	c.start(f) // catches up by snapshot
	c.waitConverged()
	if st := c.nodes[f].srv.Node().Status(); st.SnapshotIndex == 0 {
		t.Fatal("the follower caught up without a snapshot")
	}
	check := func(i int, what string) {
		t.Helper()
		kv, ok := c.nodes[i].srv.Store().Get([]byte("ttl"))
		if !ok || kv.Deadline != dl {
			t.Fatalf("%s: deadline %d, want %d", what, kv.Deadline, dl)
		}
		kv, ok = c.nodes[i].srv.Store().Get([]byte("leased"))
		if !ok || kv.Lease != g.GetId() {
			t.Fatalf("%s: lease %d, want %d", what, kv.Lease, g.GetId())
		}
		if ttl, _, ok := c.nodes[i].srv.Store().Lease(g.GetId(), false); !ok || ttl != 3600 {
			t.Fatalf("%s: lease ttl %d %v", what, ttl, ok)
		}
	}
	check(f, "after snapshot catch-up")
	for i := range c.nodes {
		c.stop(i)
	}
	for i := range c.nodes {
		c.start(i)
	}
	c.waitLeader()
	c.waitConverged()
	for i := range c.nodes {
		check(i, fmt.Sprintf("node %d after restart", i))
	}
}

// TestTTLLimitsAndStreamAuth: oversized TTLs are refused with
// INVALID_ARGUMENT, a put on a missing lease with NOT_FOUND, and the
// keep-alive stream refuses an unauthenticated caller through the stream
// interceptor.
func TestTTLLimitsAndStreamAuth(t *testing.T) {
	n, a := authNode(t)
	root := login(t, a, "root", "rootpw")
	leases := kvdbv1.NewLeaseServiceClient(n.conn)
	maxTTL := n.srv.core.Limits().MaxTTL
	tests := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"ttl_ms over max-ttl", func() error {
			_, err := n.kv.Put(root, &kvdbv1.PutRequest{Key: []byte("k"), TtlMs: maxTTL.Milliseconds() + 1})
			return err
		}, codes.InvalidArgument},
		{"negative ttl_ms", func() error {
			_, err := n.kv.Put(root, &kvdbv1.PutRequest{Key: []byte("k"), TtlMs: -1})
			return err
		}, codes.InvalidArgument},
		{"lease ttl over max-ttl", func() error {
			_, err := leases.LeaseGrant(root, &kvdbv1.LeaseGrantRequest{Ttl: int64(maxTTL/time.Second) + 1})
			return err
		}, codes.InvalidArgument},
		{"lease ttl zero", func() error {
			_, err := leases.LeaseGrant(root, &kvdbv1.LeaseGrantRequest{Ttl: 0})
			return err
		}, codes.InvalidArgument},
		{"ttl and lease together", func() error {
			_, err := n.kv.Put(root, &kvdbv1.PutRequest{Key: []byte("k"), TtlMs: 10, Lease: 5})
			return err
		}, codes.InvalidArgument},
		{"missing lease", func() error {
			_, err := n.kv.Put(root, &kvdbv1.PutRequest{Key: []byte("k"), Lease: 12345})
			return err
		}, codes.NotFound},
		{"keep-alive stream without credentials", func() error {
			s, err := leases.LeaseKeepAlive(ctxT(t))
			if err != nil {
				return err
			}
			_ = s.Send(&kvdbv1.LeaseKeepAliveRequest{Id: 1})
			_, err = s.Recv()
			return err
		}, codes.Unauthenticated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := status.Code(tc.call()); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	// max-leases bounds the leases that exist at once.
	l := n.srv.core.Limits()
	saved := l.MaxLeases
	l.MaxLeases = 1
	n.srv.core.SetLimits(l)
	first, err := leases.LeaseGrant(root, &kvdbv1.LeaseGrantRequest{Ttl: 60})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leases.LeaseGrant(root, &kvdbv1.LeaseGrantRequest{Ttl: 60}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a grant past max-leases: %v, want RESOURCE_EXHAUSTED", err)
	}
	if _, err := leases.LeaseRevoke(root, &kvdbv1.LeaseRevokeRequest{Id: first.GetId()}); err != nil {
		t.Fatal(err)
	}
	l.MaxLeases = saved
	n.srv.core.SetLimits(l)
	// The stream works for an authenticated caller.
	g, err := leases.LeaseGrant(root, &kvdbv1.LeaseGrantRequest{Ttl: 60})
	if err != nil {
		t.Fatal(err)
	}
	s, err := leases.LeaseKeepAlive(root)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := s.Send(&kvdbv1.LeaseKeepAliveRequest{Id: g.GetId()}); err != nil {
			t.Fatal(err)
		}
		r, err := s.Recv()
		if err != nil || r.GetTtl() != 60 {
			t.Fatalf("keep-alive: %v %v", r, err)
		}
	}
	_ = s.CloseSend()
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream end: %v", err)
	}
}

// TestWritesOnExpiredNotYetDeleted: a key past its deadline whose delete
// has not committed yet (the leader waits one election timeout in office
// before expiring anything; here, ten minutes) is absent to writes as it is
// to reads: a put starts it anew (version 1, a new create revision, no
// prev_kv), a delete counts and returns nothing, a batch and a transaction
// that read it as absent see it so.
func TestWritesOnExpiredNotYetDeleted(t *testing.T) {
	n := startNode(t, t.TempDir(), func(cfg *Config) { cfg.Raft.ElectionTicks = 6000 })
	ctx := context.Background()
	for _, k := range []string{"p", "d", "r1", "r2", "b", "t", "u"} {
		if _, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte(k), Value: []byte("old"), TtlMs: 1}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)

	p, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte("p"), Value: []byte("new"), PrevKv: true})
	if err != nil || p.GetPrevKv() != nil {
		t.Fatalf("put over an expired key = %v, %v; want no prev_kv", p, err)
	}
	g, err := n.kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte("p")})
	if kv := g.GetKv(); err != nil || kv.GetVersion() != 1 || kv.GetCreateRevision() != kv.GetModRevision() {
		t.Fatalf("p = %v, %v; want a new key (version 1, created at its mod revision)", kv, err)
	}
	d, err := n.kv.Delete(ctx, &kvdbv1.DeleteRequest{Key: []byte("d"), PrevKv: true})
	if err != nil || d.GetDeleted() != 0 || len(d.GetPrevKvs()) != 0 {
		t.Fatalf("delete of an expired key = %v, %v; want nothing deleted", d, err)
	}
	d, err = n.kv.Delete(ctx, &kvdbv1.DeleteRequest{Key: []byte("r"), Prefix: true})
	if err != nil || d.GetDeleted() != 0 {
		t.Fatalf("prefix delete of expired keys = %v, %v; want 0 deleted", d, err)
	}
	if _, err := n.kv.Batch(ctx, &kvdbv1.BatchRequest{Ops: []*kvdbv1.BatchOp{{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: []byte("b"), Value: []byte("new")}}}}}); err != nil {
		t.Fatal(err)
	}
	if g, _ := n.kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte("b")}); g.GetKv().GetVersion() != 1 {
		t.Fatalf("b after a batch put = %v, want version 1", g.GetKv())
	}
	c := txnClient(n)
	id := begin(t, c, "")
	if _, ok := txnGet(t, c, id, "t"); ok {
		t.Fatal("a transaction sees the expired key t")
	}
	if _, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte("ulive"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	// A limit of one over [u, v) skips the expired u for the live ulive.
	if r, err := c.Range(ctx, &kvdbv1.TxnServiceRangeRequest{TxnId: id, Key: []byte("u"), RangeEnd: []byte("v"), Limit: 1}); err != nil ||
		len(r.GetKvs()) != 1 || string(r.GetKvs()[0].GetKey()) != "ulive" || r.GetMore() {
		t.Fatalf("a transaction's range over the expired key u = %v, %v", r, err)
	}
	x, err := txnClient(n).Execute(ctx, &kvdbv1.ExecuteRequest{Success: []*kvdbv1.ExecuteOp{{Op: &kvdbv1.ExecuteOp_Range{
		Range: &kvdbv1.RangeRequest{Key: []byte("u"), RangeEnd: []byte("v"), Limit: 1}}}}})
	if rr := x.GetResponses()[0].GetRange(); err != nil || len(rr.GetKvs()) != 1 || rr.GetCount() != 1 || rr.GetMore() {
		t.Fatalf("Execute's range over the expired key u = %v, %v", rr, err)
	}
	txnPut(t, c, id, "t", "mine")
	if err := commit(c, id); err != nil {
		t.Fatalf("commit after reading an expired key as absent: %v", err)
	}
	if got := n.srv.Store().ExpiredKeys(); got != 0 {
		t.Fatalf("the expiry loop deleted %d keys during the test: it did not test the window", got)
	}
}

// TestLeasePutThroughLaggingFollower: a put with a lease the leader has
// granted (and acknowledged) succeeds through a follower that has not
// applied the grant yet: whether the lease exists is decided when the put
// applies, not by the follower's own store beforehand.
func TestLeasePutThroughLaggingFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster")
	}
	// An election timeout of a second: the follower cut off for a tenth of
	// it does not campaign.
	c := newCluster(t, 3, func(cfg *Config) { cfg.Raft.ElectionTicks = 100 })
	l := c.waitLeader()
	f := (l + 1) % 3
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.net.Cut(c.ids[l], c.ids[f]) // f hears nothing from the leader
	g, err := kvdbv1.NewLeaseServiceClient(c.nodes[l].conn).LeaseGrant(ctx, &kvdbv1.LeaseGrantRequest{Ttl: 600})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := c.nodes[f].srv.Store().Lease(g.GetId(), false); ok {
		t.Fatal("the cut follower applied the grant: the test needs it behind")
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.nodes[f].kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte("svc"), Value: []byte("up"), Lease: g.GetId()})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	c.net.Heal()
	if err := <-done; err != nil {
		t.Fatalf("put with an acknowledged lease through a lagging follower: %v", err)
	}
	if kv, ok := c.nodes[l].srv.Store().Get([]byte("svc")); !ok || kv.Lease != g.GetId() {
		t.Fatalf("svc on the leader = %+v, %v", kv, ok)
	}
	// Only the leader knows how long the lease has left; a follower says
	// so (it used to answer the granted TTL, or no lease at all).
	ttl, err := kvdbv1.NewLeaseServiceClient(c.nodes[l].conn).LeaseTimeToLive(ctx, &kvdbv1.LeaseTimeToLiveRequest{Id: g.GetId()})
	if err != nil || ttl.GetTtl() <= 0 || ttl.GetTtl() > 600 || ttl.GetGrantedTtl() != 600 {
		t.Fatalf("LeaseTimeToLive on the leader = %v, %v", ttl, err)
	}
	_, err = kvdbv1.NewLeaseServiceClient(c.nodes[f].conn).LeaseTimeToLive(ctx, &kvdbv1.LeaseTimeToLiveRequest{Id: g.GetId()})
	wantCode(t, err, codes.FailedPrecondition, "leader")
}

// TestLeaseLeasesPages: LeaseLeases answers a page of at most
// max-range-limit leases by id, with more set, and the next page from
// after; the Go client's Leases walks every page.
func TestLeaseLeasesPages(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) { c.Limits.MaxRangeLimit = 3 })
	ctx := ctxT(t)
	leases := kvdbv1.NewLeaseServiceClient(n.conn)
	var granted []int64
	for range 7 {
		g, err := leases.LeaseGrant(ctx, &kvdbv1.LeaseGrantRequest{Ttl: 600})
		if err != nil {
			t.Fatal(err)
		}
		granted = append(granted, g.GetId())
	}
	slices.Sort(granted)
	ids := func(r *kvdbv1.LeaseLeasesResponse) []int64 {
		var out []int64
		for _, l := range r.GetLeases() {
			out = append(out, l.GetId())
		}
		return out
	}
	for _, tc := range []struct {
		req  *kvdbv1.LeaseLeasesRequest
		want []int64
		more bool
	}{
		{&kvdbv1.LeaseLeasesRequest{}, granted[:3], true},
		{&kvdbv1.LeaseLeasesRequest{After: granted[2], Limit: 2}, granted[3:5], true},
		{&kvdbv1.LeaseLeasesRequest{After: granted[4], Limit: 100}, granted[5:], false},
		{&kvdbv1.LeaseLeasesRequest{After: granted[6]}, nil, false},
	} {
		r, err := leases.LeaseLeases(ctx, tc.req)
		if err != nil || !slices.Equal(ids(r), tc.want) || r.GetMore() != tc.more {
			t.Fatalf("LeaseLeases(%v) = %v more=%v %v, want %v more=%v", tc.req, ids(r), r.GetMore(), err, tc.want, tc.more)
		}
	}
	if _, err := leases.LeaseLeases(ctx, &kvdbv1.LeaseLeasesRequest{Limit: -1}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("negative limit: %v", err)
	}
	c, err := kvclient.New(ctx, kvclient.Options{Endpoints: []string{n.addr}, Protocol: kvclient.ProtocolGRPC})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	all, err := c.Leases(ctx)
	if err != nil || len(all) != len(granted) {
		t.Fatalf("client Leases = %v %v, want %v", all, err, granted)
	}
	for i, id := range all {
		if int64(id) != granted[i] {
			t.Fatalf("client Leases = %v, want %v", all, granted)
		}
	}
}
