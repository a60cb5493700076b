package service

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// txn returns node i's transaction client, or nil when it is down.
func (c *testCluster) txn(i int) kvdbv1.TxnServiceClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes[i] == nil {
		return nil
	}
	return kvdbv1.NewTxnServiceClient(c.nodes[i].conn)
}

// TestTxnBankClusterLeaderKill: 10 accounts, 8 clients doing random
// transfers with retry on ABORTED on a 3-node cluster, with the leader
// killed and restarted in the middle. Every transfer also writes a marker
// key in the same transaction, so a commit whose outcome the client could
// not learn (its node died) is settled by the marker. The total never
// changes in any audited snapshot, every acknowledged transfer has its
// marker, and the balances are exactly what the markers add up to.
func TestTxnBankClusterLeaderKill(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := c.waitLeader()
	init := &kvdbv1.BatchRequest{}
	for i := range bankAccounts {
		init.Ops = append(init.Ops, &kvdbv1.BatchOp{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: []byte(bankKey(i)), Value: []byte(strconv.Itoa(bankInitial))}}})
	}
	if _, err := c.kv(l).Batch(ctx, init); err != nil {
		t.Fatal(err)
	}

	const duration = 3 * time.Second
	deadline := time.Now().Add(duration)
	var (
		acked    sync.Map // marker key -> true, for transfers whose commit was acknowledged
		ackedN   atomic.Int64
		unknownN atomic.Int64
		audits   atomic.Int64
		wg       sync.WaitGroup
	)
	for ci := range bankClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(ci), 21))
			node := ci % 3
			for n := 0; n < 500 && time.Now().Before(deadline); n++ {
				from, to := rng.IntN(bankAccounts), rng.IntN(bankAccounts-1)
				if to >= from {
					to++
				}
				amount := 1 + rng.IntN(20)
				marker := fmt.Sprintf("xfer/%d-%d", ci, n)
				for attempt := 0; attempt < 1000 && time.Now().Before(deadline.Add(5*time.Second)); attempt++ {
					tc := c.txn(node)
					if tc == nil {
						node = (node + 1) % 3
						continue
					}
					outcome := bankTransfer(ctx, tc, from, to, amount, marker)
					if outcome == "ok" {
						acked.Store(marker, true)
						ackedN.Add(1)
						break
					}
					if outcome == "unknown" {
						unknownN.Add(1)
						break // the marker will tell
					}
					if outcome == "retry-elsewhere" {
						node = (node + 1) % 3
						time.Sleep(10 * time.Millisecond)
					}
					// "aborted" or "insufficient": try again (insufficient
					// funds commits nothing worth keeping; pick new amounts)
					if outcome == "insufficient" {
						break
					}
				}
			}
		}()
	}
	// The auditor reads every account in one snapshot from rotating nodes.
	wg.Add(1)
	var auditErr atomic.Value
	go func() {
		defer wg.Done()
		for i := 0; time.Now().Before(deadline) && i < 100_000; i++ {
			kv := c.kv(i % 3)
			if kv == nil {
				continue
			}
			actx, acancel := context.WithTimeout(ctx, 500*time.Millisecond)
			r, err := kv.Range(actx, &kvdbv1.RangeRequest{Key: []byte("acct/"), Prefix: true})
			acancel()
			if err != nil {
				continue // node down or no leader: no snapshot to audit
			}
			total := 0
			for _, kv := range r.GetKvs() {
				v, _ := strconv.Atoi(string(kv.GetValue()))
				total += v
			}
			if len(r.GetKvs()) != bankAccounts || total != bankAccounts*bankInitial {
				auditErr.Store(fmt.Errorf("audit %d at revision %d: %d accounts totalling %d", i, r.GetHeader().GetRevision(), len(r.GetKvs()), total))
				return
			}
			audits.Add(1)
		}
	}()

	// Kill the leader in the middle, bring it back a little later.
	time.Sleep(duration / 3)
	victim := c.waitLeader()
	c.kill(victim)
	time.Sleep(500 * time.Millisecond)
	c.start(victim)
	wg.Wait()
	if err, _ := auditErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	c.waitLeader()
	c.waitConverged()

	// Settle: balances must equal the initial ones plus every transfer
	// whose marker exists; every acknowledged transfer must have one.
	l = c.waitLeader()
	markers, err := c.kv(l).Range(ctx, &kvdbv1.RangeRequest{Key: []byte("xfer/"), Prefix: true, Limit: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	var want [bankAccounts]int
	for i := range want {
		want[i] = bankInitial
	}
	present := map[string]bool{}
	for _, kv := range markers.GetKvs() {
		present[string(kv.GetKey())] = true
		var from, to, amount int
		if _, err := fmt.Sscanf(string(kv.GetValue()), "%d,%d,%d", &from, &to, &amount); err != nil {
			t.Fatalf("marker %s = %q", kv.GetKey(), kv.GetValue())
		}
		want[from] -= amount
		want[to] += amount
	}
	acked.Range(func(k, _ any) bool {
		if !present[k.(string)] {
			t.Errorf("acknowledged transfer %s is not reflected", k)
		}
		return true
	})
	r, err := c.kv(l).Range(ctx, &kvdbv1.RangeRequest{Key: []byte("acct/"), Prefix: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, kv := range r.GetKvs() {
		if got, _ := strconv.Atoi(string(kv.GetValue())); got != want[i] {
			t.Errorf("%s = %d, want %d from the committed transfers", kv.GetKey(), got, want[i])
		}
	}
	t.Logf("%d transfers acknowledged, %d with an unknown outcome, %d markers, %d audits", ackedN.Load(), unknownN.Load(), len(present), audits.Load())
	if ackedN.Load() == 0 || audits.Load() == 0 {
		t.Fatal("the bank test did no work")
	}
}

// bankTransfer runs one transfer as an interactive transaction and says how
// it ended: "ok", "aborted" (retry), "insufficient", "retry-elsewhere" (the
// node failed before Commit: nothing was written), or "unknown" (Commit
// failed without an answer: it may have been applied).
func bankTransfer(ctx context.Context, c kvdbv1.TxnServiceClient, from, to, amount int, marker string) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	b, err := c.Begin(ctx, &kvdbv1.BeginRequest{})
	if err != nil {
		return "retry-elsewhere"
	}
	id := b.GetTxnId()
	a, err1 := readInt(ctx, c, id, bankKey(from))
	bb, err2 := readInt(ctx, c, id, bankKey(to))
	if err1 != nil || err2 != nil {
		return "retry-elsewhere"
	}
	if a < amount {
		_, _ = c.Rollback(ctx, &kvdbv1.RollbackRequest{TxnId: id})
		return "insufficient"
	}
	if writeInt(ctx, c, id, bankKey(from), a-amount) != nil ||
		writeInt(ctx, c, id, bankKey(to), bb+amount) != nil {
		return "retry-elsewhere"
	}
	if _, err := c.Put(ctx, &kvdbv1.TxnServicePutRequest{TxnId: id, Key: []byte(marker), Value: []byte(fmt.Sprintf("%d,%d,%d", from, to, amount))}); err != nil {
		return "retry-elsewhere"
	}
	_, err = c.Commit(ctx, &kvdbv1.CommitRequest{TxnId: id})
	switch {
	case err == nil:
		return "ok"
	case status.Code(err) == codes.Aborted:
		return "aborted"
	case definitelyNotApplied(err):
		return "retry-elsewhere"
	}
	return "unknown"
}

// TestTxnStrictSerializabilityUnderFaults records small multi-key
// transactions from clients on all three nodes while the leader is killed
// and the network is partitioned, and checks the history with porcupine
// (the key set as one object whose steps are whole transactions).
func TestTxnStrictSerializabilityUnderFaults(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	const farFuture = int64(1) << 62
	var (
		mu   sync.Mutex
		hist []porcupine.Operation
		stop atomic.Bool
		wg   sync.WaitGroup
	)
	for ci := 0; ci < 6; ci++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(ci), 5))
			for seq := 0; seq < 150 && !stop.Load(); seq++ {
				tc := c.txn(ci % 3)
				if tc == nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				in := histIn{writes: map[int]int{}}
				for _, k := range rng.Perm(histKeys)[:1+rng.IntN(2)] {
					in.reads = append(in.reads, k)
				}
				for range rng.IntN(3) {
					in.writes[rng.IntN(histKeys)] = (ci+1)*100_000 + seq
				}
				tctx, tcancel := context.WithTimeout(ctx, time.Second)
				call := time.Since(start).Nanoseconds()
				out, err := runHistTxn(tctx, tc, in)
				tcancel()
				ret := time.Since(start).Nanoseconds()
				if err != nil {
					// Failed before Commit: nothing was proposed.
					time.Sleep(10 * time.Millisecond)
					continue
				}
				if out.outcome == "unknown" {
					ret = farFuture
				}
				mu.Lock()
				hist = append(hist, porcupine.Operation{ClientId: ci, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		}()
	}
	time.Sleep(400 * time.Millisecond)
	l := c.waitLeader()
	c.kill(l)
	time.Sleep(400 * time.Millisecond)
	c.start(l)
	time.Sleep(300 * time.Millisecond)
	i := c.waitLeader()
	c.net.Isolate(c.ids[i])
	time.Sleep(400 * time.Millisecond)
	c.net.Heal()
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	count := outcomes(hist)
	committed, unknown := count["ok"], count["unknown"]
	t.Logf("%d transactions: %d committed, %d unknown", len(hist), committed, unknown)
	if committed < 10 {
		t.Fatalf("only %d transactions committed", committed)
	}
	res, _ := porcupine.CheckOperationsVerbose(txnModel.ToModel(), hist, 60*time.Second)
	if res == porcupine.Illegal {
		t.Fatalf("history of %d transactions is not strictly serializable", len(hist))
	}
	if res == porcupine.Unknown {
		t.Fatalf("porcupine timed out on %d transactions", len(hist))
	}
}
