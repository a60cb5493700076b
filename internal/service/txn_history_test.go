package service

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// The history checks model the whole key set as ONE porcupine object whose
// steps are whole transactions, so linearizability of that object is strict
// serializability of the transactions. They take lists of clients so the
// same code can drive a cluster (one client per node) with faults.

const histKeys = 4

// histState is the value of every key (0: absent).
type histState [histKeys]int

// histIn is one transaction: the keys it reads, then the writes it makes.
type histIn struct {
	reads  []int
	writes map[int]int
}

// histOut is what the client saw: the values read and how Commit ended.
type histOut struct {
	values []int
	// outcome is "ok", "aborted" or "unknown" (any other error: the commit
	// may or may not have been applied).
	outcome string
}

var txnModel = porcupine.NondeterministicModel{
	Init: func() []any { return []any{histState{}} },
	Step: func(state, input, output any) []any {
		st, in, out := state.(histState), input.(histIn), output.(histOut)
		applied := func() (histState, bool) {
			for i, k := range in.reads {
				if st[k] != out.values[i] {
					return st, false
				}
			}
			next := st
			for k, v := range in.writes {
				next[k] = v
			}
			return next, true
		}
		switch out.outcome {
		case "aborted":
			return []any{st} // no effect, and its reads promise nothing
		case "unknown":
			if next, ok := applied(); ok {
				return []any{st, next}
			}
			return []any{st}
		}
		if next, ok := applied(); ok {
			return []any{next}
		}
		return nil
	},
	Equal: func(a, b any) bool { return a.(histState) == b.(histState) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(histIn), output.(histOut)
		return fmt.Sprintf("read %v=%v write %v: %s", in.reads, out.values, in.writes, out.outcome)
	},
}

// recordTxnHistory runs perClient random transactions from each client
// concurrently and returns the history.
func recordTxnHistory(ctx context.Context, t *testing.T, clients []kvdbv1.TxnServiceClient, perClient int) []porcupine.Operation {
	start := time.Now()
	var mu sync.Mutex
	var hist []porcupine.Operation
	var wg sync.WaitGroup
	for ci, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(ci), 7))
			for seq := range perClient {
				in := histIn{writes: map[int]int{}}
				for _, k := range rng.Perm(histKeys)[:1+rng.IntN(2)] {
					in.reads = append(in.reads, k)
				}
				for range rng.IntN(3) { // read-only transactions too
					in.writes[rng.IntN(histKeys)] = (ci+1)*100_000 + seq
				}
				call := time.Since(start).Nanoseconds()
				out, err := runHistTxn(ctx, c, in)
				if err != nil {
					t.Errorf("client %d: %v", ci, err)
					return
				}
				ret := time.Since(start).Nanoseconds()
				mu.Lock()
				hist = append(hist, porcupine.Operation{ClientId: ci, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return hist
}

func histKey(k int) []byte { return []byte("h/" + strconv.Itoa(k)) }

// runHistTxn runs one transaction. Errors before Commit fail the test
// (nothing was written); a Commit error other than ABORTED is "unknown".
func runHistTxn(ctx context.Context, c kvdbv1.TxnServiceClient, in histIn) (histOut, error) {
	b, err := c.Begin(ctx, &kvdbv1.BeginRequest{})
	if err != nil {
		return histOut{}, err
	}
	id := b.GetTxnId()
	out := histOut{}
	for _, k := range in.reads {
		v, err := readInt(ctx, c, id, string(histKey(k)))
		if err != nil {
			return out, err
		}
		out.values = append(out.values, v)
	}
	for k, v := range in.writes {
		if err := writeInt(ctx, c, id, string(histKey(k)), v); err != nil {
			return out, err
		}
	}
	_, err = c.Commit(ctx, &kvdbv1.CommitRequest{TxnId: id})
	switch status.Code(err) {
	case codes.OK:
		out.outcome = "ok"
	case codes.Aborted:
		out.outcome = "aborted"
	default:
		out.outcome = "unknown"
	}
	return out, nil
}

func checkHistory(t *testing.T, hist []porcupine.Operation) {
	t.Helper()
	res, _ := porcupine.CheckOperationsVerbose(txnModel.ToModel(), hist, 30*time.Second)
	switch res {
	case porcupine.Illegal:
		t.Fatalf("history of %d transactions is not strictly serializable", len(hist))
	case porcupine.Unknown:
		t.Logf("porcupine timed out on %d transactions; no violation found", len(hist))
	}
}

func TestTxnStrictSerializabilityPorcupine(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	c := txnClient(n)
	clients := []kvdbv1.TxnServiceClient{c, c, c, c, c, c}
	hist := recordTxnHistory(ctxT(t), t, clients, 30)
	count := outcomes(hist)
	committed, aborted := count["ok"], count["aborted"]
	t.Logf("%d transactions: %d committed, %d aborted", len(hist), committed, aborted)
	if committed == 0 {
		t.Fatal("no transaction committed")
	}
	checkHistory(t, hist)
}

// TestTxnModelRejectsViolations makes sure the checker can fail: a read
// that misses a write committed before it began is illegal.
func TestTxnModelRejectsViolations(t *testing.T) {
	w := porcupine.Operation{Input: histIn{writes: map[int]int{0: 5}}, Output: histOut{outcome: "ok"}, Call: 0, Return: 10}
	stale := porcupine.Operation{ClientId: 1, Input: histIn{reads: []int{0}, writes: map[int]int{}}, Output: histOut{values: []int{0}, outcome: "ok"}, Call: 20, Return: 30}
	if porcupine.CheckOperations(txnModel.ToModel(), []porcupine.Operation{w, stale}) {
		t.Fatal("stale read accepted")
	}
	stale.Call = 5 // concurrent with the write: may be ordered before it
	if !porcupine.CheckOperations(txnModel.ToModel(), []porcupine.Operation{w, stale}) {
		t.Fatal("concurrent read rejected")
	}
	// Two read-modify-writes that both committed from the same read: a
	// lost update.
	a := porcupine.Operation{Input: histIn{reads: []int{1}, writes: map[int]int{1: 1}}, Output: histOut{values: []int{0}, outcome: "ok"}, Call: 0, Return: 10}
	b := porcupine.Operation{ClientId: 1, Input: histIn{reads: []int{1}, writes: map[int]int{1: 2}}, Output: histOut{values: []int{0}, outcome: "ok"}, Call: 0, Return: 10}
	if porcupine.CheckOperations(txnModel.ToModel(), []porcupine.Operation{a, b}) {
		t.Fatal("lost update accepted")
	}
}

// bankTarget is where the bank test sends its traffic: one node now, the
// nodes of a cluster later (the same client index always uses the same
// node, as interactive transactions live on the node that began them).
type bankTarget struct {
	txn []kvdbv1.TxnServiceClient
	kv  []kvdbv1.KVServiceClient
}

const (
	bankAccounts = 10
	bankInitial  = 100
	bankClients  = 8
)

func bankKey(i int) string { return fmt.Sprintf("acct/%02d", i) }

// runBank does random transfers from bankClients clients for at most d (and
// at most 300 transfers each) while an auditor checks every snapshot, then
// checks each account against the ledger of committed transfers.
func runBank(ctx context.Context, t *testing.T, tgt bankTarget, d time.Duration) {
	init := &kvdbv1.BatchRequest{}
	for i := range bankAccounts {
		init.Ops = append(init.Ops, &kvdbv1.BatchOp{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: []byte(bankKey(i)), Value: []byte(strconv.Itoa(bankInitial))}}})
	}
	if _, err := tgt.kv[0].Batch(ctx, init); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(d)
	ledgers := make([][bankAccounts]int, bankClients)
	var transfers, retries [bankClients]int
	var wg sync.WaitGroup
	for ci := range bankClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := tgt.txn[ci%len(tgt.txn)]
			rng := rand.New(rand.NewPCG(uint64(ci), 11))
			for i := 0; i < 300 && time.Now().Before(deadline); i++ {
				from, to := rng.IntN(bankAccounts), rng.IntN(bankAccounts-1)
				if to >= from {
					to++
				}
				amount := 1 + rng.IntN(20)
				moved := 0
				attempts, err := retryTxn(ctx, c, func(ctx context.Context, id string) error {
					moved = 0
					a, err := readInt(ctx, c, id, bankKey(from))
					if err != nil {
						return err
					}
					b, err := readInt(ctx, c, id, bankKey(to))
					if err != nil {
						return err
					}
					if a < amount {
						return nil // insufficient funds: commit the reads only
					}
					moved = amount
					if err := writeInt(ctx, c, id, bankKey(from), a-amount); err != nil {
						return err
					}
					return writeInt(ctx, c, id, bankKey(to), b+amount)
				})
				if err != nil {
					t.Errorf("client %d transfer: %v", ci, err)
					return
				}
				ledgers[ci][from] -= moved
				ledgers[ci][to] += moved
				transfers[ci]++
				retries[ci] += attempts - 1
			}
		}()
	}
	auditDone := make(chan struct{})
	audits := 0
	go func() {
		defer close(auditDone)
		for i := 0; time.Now().Before(deadline) && i < 10_000; i++ {
			if err := auditBank(ctx, tgt, i); err != nil {
				t.Error(err)
				return
			}
			audits++
		}
	}()
	wg.Wait()
	<-auditDone
	if t.Failed() {
		return
	}
	var want [bankAccounts]int
	for i := range want {
		want[i] = bankInitial
		for _, l := range ledgers {
			want[i] += l[i]
		}
	}
	r, err := tgt.kv[0].Range(ctx, &kvdbv1.RangeRequest{Key: []byte("acct/"), Prefix: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, kv := range r.GetKvs() {
		if got, _ := strconv.Atoi(string(kv.GetValue())); got != want[i] {
			t.Errorf("%s = %d, want %d from the committed transfers", kv.GetKey(), got, want[i])
		}
	}
	total, retried := 0, 0
	for i := range bankClients {
		total += transfers[i]
		retried += retries[i]
	}
	t.Logf("%d transfers committed, %d retries after ABORTED, %d audits", total, retried, audits)
	if total == 0 || audits == 0 {
		t.Fatal("the bank test did no work")
	}
}

// auditBank reads every account in one snapshot, alternating between a
// KV Range (one revision) and a read-only transaction that is committed (so
// its reads are validated), and checks the total.
func auditBank(ctx context.Context, tgt bankTarget, i int) error {
	var kvs []*kvdbv1.KeyValue
	if i%2 == 0 {
		r, err := tgt.kv[i%len(tgt.kv)].Range(ctx, &kvdbv1.RangeRequest{Key: []byte("acct/"), Prefix: true})
		if err != nil {
			return err
		}
		kvs = r.GetKvs()
	} else {
		c := tgt.txn[i%len(tgt.txn)]
		_, err := retryTxn(ctx, c, func(ctx context.Context, id string) error {
			r, err := c.Range(ctx, &kvdbv1.TxnServiceRangeRequest{TxnId: id, Key: []byte("acct/"), Prefix: true})
			kvs = r.GetKvs()
			return err
		})
		if err != nil {
			return err
		}
	}
	total := 0
	for _, kv := range kvs {
		v, _ := strconv.Atoi(string(kv.GetValue()))
		total += v
	}
	if len(kvs) != bankAccounts || total != bankAccounts*bankInitial {
		return fmt.Errorf("audit %d: %d accounts totalling %d, want %d totalling %d", i, len(kvs), total, bankAccounts, bankAccounts*bankInitial)
	}
	return nil
}

func TestTxnBank(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runBank(ctx, t, bankTarget{txn: []kvdbv1.TxnServiceClient{txnClient(n)}, kv: []kvdbv1.KVServiceClient{n.kv}}, 2*time.Second)
}

// outcomes counts a history's transactions by outcome.
func outcomes(hist []porcupine.Operation) map[string]int {
	n := map[string]int{}
	for _, op := range hist {
		n[op.Output.(histOut).outcome]++
	}
	return n
}
