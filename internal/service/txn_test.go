package service

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/core"
)

func txnClient(n *testNode) kvdbv1.TxnServiceClient { return kvdbv1.NewTxnServiceClient(n.conn) }

func mustPut(t *testing.T, n *testNode, k, v string) int64 {
	t.Helper()
	r, err := n.kv.Put(context.Background(), &kvdbv1.PutRequest{Key: []byte(k), Value: []byte(v)})
	if err != nil {
		t.Fatalf("Put %s: %v", k, err)
	}
	return r.GetHeader().GetRevision()
}

func mustGet(t *testing.T, n *testNode, k string) (string, bool) {
	t.Helper()
	r, err := n.kv.Get(context.Background(), &kvdbv1.GetRequest{Key: []byte(k)})
	if status.Code(err) == codes.NotFound {
		return "", false
	}
	if err != nil {
		t.Fatalf("Get %s: %v", k, err)
	}
	return string(r.GetKv().GetValue()), true
}

func wantCode(t *testing.T, err error, code codes.Code, contains string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), contains) {
		t.Fatalf("err = %v, want %v containing %q", err, code, contains)
	}
}

func begin(t *testing.T, c kvdbv1.TxnServiceClient, id string) string {
	t.Helper()
	r, err := c.Begin(context.Background(), &kvdbv1.BeginRequest{TxnId: id})
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	return r.GetTxnId()
}

func txnPut(t *testing.T, c kvdbv1.TxnServiceClient, id, k, v string) {
	t.Helper()
	if _, err := c.Put(context.Background(), &kvdbv1.TxnServicePutRequest{TxnId: id, Key: []byte(k), Value: []byte(v)}); err != nil {
		t.Fatalf("txn Put %s: %v", k, err)
	}
}

func txnGet(t *testing.T, c kvdbv1.TxnServiceClient, id, k string) (string, bool) {
	t.Helper()
	r, err := c.Get(context.Background(), &kvdbv1.TxnServiceGetRequest{TxnId: id, Key: []byte(k)})
	if status.Code(err) == codes.NotFound {
		return "", false
	}
	if err != nil {
		t.Fatalf("txn Get %s: %v", k, err)
	}
	return string(r.GetKv().GetValue()), true
}

func commit(c kvdbv1.TxnServiceClient, id string) error {
	_, err := c.Commit(context.Background(), &kvdbv1.CommitRequest{TxnId: id})
	return err
}

func TestTxnReadYourWrites(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	c := txnClient(n)
	mustPut(t, n, "a", "0")
	mustPut(t, n, "b", "0")
	id := begin(t, c, "tx1")
	if id != "tx1" {
		t.Fatalf("id = %q, want the client's tx1", id)
	}
	txnPut(t, c, id, "a", "1")
	txnPut(t, c, id, "c", "1")
	if _, err := c.Delete(context.Background(), &kvdbv1.TxnServiceDeleteRequest{TxnId: id, Key: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	if v, _ := txnGet(t, c, id, "a"); v != "1" {
		t.Fatalf("txn sees a = %q, want its own 1", v)
	}
	if _, ok := txnGet(t, c, id, "b"); ok {
		t.Fatal("txn still sees b it deleted")
	}
	r, err := c.Range(context.Background(), &kvdbv1.TxnServiceRangeRequest{TxnId: id, Key: []byte("a"), RangeEnd: []byte("z")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range r.GetKvs() {
		got = append(got, string(kv.GetKey())+"="+string(kv.GetValue()))
	}
	if strings.Join(got, ",") != "a=1,c=1" {
		t.Fatalf("txn range = %v, want a=1,c=1", got)
	}
	// Nothing is visible outside before Commit.
	if v, _ := mustGet(t, n, "a"); v != "0" {
		t.Fatalf("outside sees a = %q before commit", v)
	}
	resp, err := c.Commit(context.Background(), &kvdbv1.CommitRequest{TxnId: id})
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if resp.GetPuts() != 2 || resp.GetDeleted() != 1 || resp.GetHeader().GetRevision() != 3 {
		t.Fatalf("commit = %v, want 2 puts, 1 deleted at revision 3", resp)
	}
	for k, want := range map[string]string{"a": "1", "c": "1"} {
		if v, _ := mustGet(t, n, k); v != want {
			t.Fatalf("%s = %q, want %q", k, v, want)
		}
	}
	if _, ok := mustGet(t, n, "b"); ok {
		t.Fatal("b survived the commit that deleted it")
	}
	kv, _ := n.srv.Store().Get([]byte("a"))
	kc, _ := n.srv.Store().Get([]byte("c"))
	if kv.ModRevision != 3 || kc.ModRevision != 3 {
		t.Fatalf("writes at revisions %d and %d, want both at 3", kv.ModRevision, kc.ModRevision)
	}
	// The transaction is over.
	wantCode(t, commit(c, id), codes.NotFound, "not open")
}

func TestTxnAbortOnChangedRead(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	c := txnClient(n)
	mustPut(t, n, "a", "0")
	id := begin(t, c, "")
	txnGet(t, c, id, "a")
	txnGet(t, c, id, "absent")
	txnPut(t, c, id, "b", "1")
	mustPut(t, n, "a", "changed")
	rev := n.srv.Store().Revision()
	wantCode(t, commit(c, id), codes.Aborted, `key "a"`)
	if _, ok := mustGet(t, n, "b"); ok || n.srv.Store().Revision() != rev {
		t.Fatal("an aborted commit applied something")
	}

	// A key read as absent that appears is a conflict too.
	id = begin(t, c, "")
	txnGet(t, c, id, "absent")
	txnPut(t, c, id, "b", "1")
	mustPut(t, n, "absent", "here")
	wantCode(t, commit(c, id), codes.Aborted, `key "absent"`)

	st := n.srv.Stats().GetTransactions()
	if st.GetAborts() != 2 || st.GetCommits() != 0 || st.GetActive() != 0 {
		t.Fatalf("stats = %v, want 2 aborts", st)
	}
}

func TestTxnAbortOnPhantomInReadRange(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	c := txnClient(n)
	mustPut(t, n, "acct/1", "10")
	mustPut(t, n, "acct/3", "10")
	rangeRead := func(id string) {
		if _, err := c.Range(context.Background(), &kvdbv1.TxnServiceRangeRequest{TxnId: id, Key: []byte("acct/"), Prefix: true}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		change   func()
		contains string
	}{
		{"insert", func() { mustPut(t, n, "acct/2", "5") }, `key "acct/2" in read range`},
		{"modify", func() { mustPut(t, n, "acct/1", "11") }, `key "acct/1" in read range`},
		{"delete", func() {
			if _, err := n.kv.Delete(context.Background(), &kvdbv1.DeleteRequest{Key: []byte("acct/3")}); err != nil {
				t.Fatal(err)
			}
		}, "deleted from read range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := begin(t, c, "")
			rangeRead(id)
			txnPut(t, c, id, "total", "20")
			tc.change()
			wantCode(t, commit(c, id), codes.Aborted, tc.contains)
		})
	}
	// Writes outside the range do not conflict.
	id := begin(t, c, "")
	rangeRead(id)
	mustPut(t, n, "acct0", "x")
	mustPut(t, n, "other", "x")
	txnPut(t, c, id, "total", "20")
	if err := commit(c, id); err != nil {
		t.Fatalf("commit with writes only outside the range: %v", err)
	}
}

func TestTxnExpiryAndLifecycleErrors(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) { c.TxnIdleTimeout = time.Minute })
	c := txnClient(n)
	var mu sync.Mutex
	now := time.Now()
	n.srv.core.SetTxnClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	id := begin(t, c, "old")
	txnPut(t, c, id, "k", "v")
	advance(59 * time.Second)
	txnPut(t, c, id, "k", "v2") // use resets the idle clock
	advance(59 * time.Second)
	if _, ok := txnGet(t, c, id, "k"); !ok {
		t.Fatal("a transaction used within the timeout expired")
	}
	advance(61 * time.Second)
	wantCode(t, commit(c, id), codes.FailedPrecondition, "expired")
	if _, ok := mustGet(t, n, "k"); ok {
		t.Fatal("an expired transaction was applied")
	}

	// The sweeper drops idle sessions without any call touching them.
	begin(t, c, "idle")
	advance(2 * time.Minute)
	n.srv.core.SweepTxns()
	if a := n.srv.Stats().GetTransactions(); a.GetActive() != 0 || a.GetExpired() != 2 {
		t.Fatalf("after sweep: %v, want 0 active, 2 expired", a)
	}
	wantCode(t, commit(c, "idle"), codes.FailedPrecondition, "expired")

	begin(t, c, "dup")
	_, err := c.Begin(context.Background(), &kvdbv1.BeginRequest{TxnId: "dup"})
	wantCode(t, err, codes.AlreadyExists, "dup")
	if _, err := c.Rollback(context.Background(), &kvdbv1.RollbackRequest{TxnId: "dup"}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, commit(c, "dup"), codes.NotFound, "not open")
	wantCode(t, commit(c, "never"), codes.NotFound, "not open")
	_, err = c.Begin(context.Background(), &kvdbv1.BeginRequest{TxnId: "has space"})
	wantCode(t, err, codes.InvalidArgument, "printable")
}

func TestTxnLimits(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) {
		c.Limits = Limits{MaxTxnOps: 3, MaxTxnBytes: 100}
		c.MaxTxns = 2
	})
	c := txnClient(n)
	id := begin(t, c, "")
	txnGet(t, c, id, "a")
	txnGet(t, c, id, "a") // a repeated read is recorded once
	txnPut(t, c, id, "b", "1")
	txnPut(t, c, id, "c", "1")
	_, err := c.Put(context.Background(), &kvdbv1.TxnServicePutRequest{TxnId: id, Key: []byte("d"), Value: []byte("1")})
	wantCode(t, err, codes.InvalidArgument, "max-txn-ops limit of 3")

	id2 := begin(t, c, "")
	_, err = c.Put(context.Background(), &kvdbv1.TxnServicePutRequest{TxnId: id2, Key: []byte("big"), Value: make([]byte, 98)})
	wantCode(t, err, codes.InvalidArgument, "max-txn-bytes limit of 100")

	_, err = c.Begin(context.Background(), &kvdbv1.BeginRequest{})
	wantCode(t, err, codes.ResourceExhausted, "max-txns")
	// The transaction over a limit is still usable within it.
	if err := commit(c, id); err != nil {
		t.Fatalf("commit after a refused op: %v", err)
	}

	ops := make([]*kvdbv1.ExecuteOp, 4)
	for i := range ops {
		ops[i] = &kvdbv1.ExecuteOp{Op: &kvdbv1.ExecuteOp_Put{Put: &kvdbv1.PutRequest{Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")}}}
	}
	_, err = c.Execute(context.Background(), &kvdbv1.ExecuteRequest{Success: ops})
	wantCode(t, err, codes.InvalidArgument, "max-txn-ops")
}

func TestExecuteCompareOperators(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	c := txnClient(n)
	mustPut(t, n, "k", "m") // rev 1: create 1
	mustPut(t, n, "x", "x") // rev 2
	mustPut(t, n, "k", "m") // rev 3: k version 2, mod 3
	eq, ne := kvdbv1.CompareOperator_COMPARE_OPERATOR_EQUAL, kvdbv1.CompareOperator_COMPARE_OPERATOR_NOT_EQUAL
	gt, lt := kvdbv1.CompareOperator_COMPARE_OPERATOR_GREATER, kvdbv1.CompareOperator_COMPARE_OPERATOR_LESS
	value := func(v string) *kvdbv1.Compare_Value { return &kvdbv1.Compare_Value{Value: []byte(v)} }
	tests := []struct {
		op      kvdbv1.CompareOperator
		operand any
		want    bool
	}{
		{eq, value("m"), true}, {ne, value("m"), false}, {gt, value("l"), true}, {lt, value("l"), false},
		{eq, &kvdbv1.Compare_Version{Version: 2}, true}, {gt, &kvdbv1.Compare_Version{Version: 2}, false},
		{lt, &kvdbv1.Compare_Version{Version: 3}, true}, {ne, &kvdbv1.Compare_Version{Version: 2}, false},
		{eq, &kvdbv1.Compare_CreateRevision{CreateRevision: 1}, true}, {gt, &kvdbv1.Compare_CreateRevision{CreateRevision: 0}, true},
		{eq, &kvdbv1.Compare_ModRevision{ModRevision: 3}, true}, {lt, &kvdbv1.Compare_ModRevision{ModRevision: 3}, false},
		{gt, &kvdbv1.Compare_ModRevision{ModRevision: 2}, true}, {ne, &kvdbv1.Compare_ModRevision{ModRevision: 2}, true},
	}
	for i, tc := range tests {
		t.Run(fmt.Sprintf("%d/%v/%T", i, tc.op, tc.operand), func(t *testing.T) {
			cmp := &kvdbv1.Compare{Key: []byte("k"), Operator: tc.op}
			switch o := tc.operand.(type) {
			case *kvdbv1.Compare_Value:
				cmp.Operand = o
			case *kvdbv1.Compare_Version:
				cmp.Operand = o
			case *kvdbv1.Compare_CreateRevision:
				cmp.Operand = o
			case *kvdbv1.Compare_ModRevision:
				cmp.Operand = o
			}
			resp, err := c.Execute(context.Background(), &kvdbv1.ExecuteRequest{
				Compares: []*kvdbv1.Compare{cmp},
				Success:  []*kvdbv1.ExecuteOp{{Op: &kvdbv1.ExecuteOp_Range{Range: &kvdbv1.RangeRequest{Key: []byte("k")}}}},
				Failure:  []*kvdbv1.ExecuteOp{{Op: &kvdbv1.ExecuteOp_Range{Range: &kvdbv1.RangeRequest{Key: []byte("x")}}}},
			})
			if err != nil {
				t.Fatal(err)
			}
			wantKey := map[bool]string{true: "k", false: "x"}[tc.want]
			kvs := resp.GetResponses()[0].GetRange().GetKvs()
			if resp.GetSucceeded() != tc.want || len(kvs) != 1 || string(kvs[0].GetKey()) != wantKey {
				t.Fatalf("succeeded = %v, read %v; want %v and key %s", resp.GetSucceeded(), kvs, tc.want, wantKey)
			}
		})
	}
}

func TestExecuteCompareAndSwap(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	c := txnClient(n)
	rev := mustPut(t, n, "lock", "free")
	cas := func(modRev int64, v string) *kvdbv1.ExecuteResponse {
		resp, err := c.Execute(context.Background(), &kvdbv1.ExecuteRequest{
			Compares: []*kvdbv1.Compare{{Key: []byte("lock"), Operator: kvdbv1.CompareOperator_COMPARE_OPERATOR_EQUAL,
				Operand: &kvdbv1.Compare_ModRevision{ModRevision: modRev}}},
			Success: []*kvdbv1.ExecuteOp{{Op: &kvdbv1.ExecuteOp_Put{Put: &kvdbv1.PutRequest{Key: []byte("lock"), Value: []byte(v), PrevKv: true}}}},
			Failure: []*kvdbv1.ExecuteOp{{Op: &kvdbv1.ExecuteOp_Range{Range: &kvdbv1.RangeRequest{Key: []byte("lock")}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	r := cas(rev, "held")
	if !r.GetSucceeded() || string(r.GetResponses()[0].GetPut().GetPrevKv().GetValue()) != "free" {
		t.Fatalf("first CAS = %v", r)
	}
	r = cas(rev, "stolen")
	if r.GetSucceeded() || string(r.GetResponses()[0].GetRange().GetKvs()[0].GetValue()) != "held" {
		t.Fatalf("stale CAS = %v, want failure reading held", r)
	}
	_, err := c.Execute(context.Background(), &kvdbv1.ExecuteRequest{Compares: []*kvdbv1.Compare{{Key: []byte("k")}}})
	wantCode(t, err, codes.InvalidArgument, "compare 0")
}

// TestExecutePutTTLAndLease: a put inside Execute takes ttl_ms and a lease
// as Put does (the lock patterns "create_revision = 0, then put with a
// TTL" and etcd's "... then put with the session's lease"); a lease that
// does not exist fails the branch that runs whole, and bad ttl_ms or lease
// values are refused, never ignored.
func TestExecutePutTTLAndLease(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	c := txnClient(n)
	ctx := context.Background()
	put := func(p *kvdbv1.PutRequest) *kvdbv1.ExecuteOp {
		return &kvdbv1.ExecuteOp{Op: &kvdbv1.ExecuteOp_Put{Put: p}}
	}
	lock := func(p *kvdbv1.PutRequest, more ...*kvdbv1.ExecuteOp) (*kvdbv1.ExecuteResponse, error) {
		return c.Execute(ctx, &kvdbv1.ExecuteRequest{
			Compares: []*kvdbv1.Compare{{Key: p.GetKey(), Operator: kvdbv1.CompareOperator_COMPARE_OPERATOR_EQUAL,
				Operand: &kvdbv1.Compare_CreateRevision{CreateRevision: 0}}},
			Success: append([]*kvdbv1.ExecuteOp{put(p)}, more...),
			// Never runs while the key is free: its missing lease must not
			// matter.
			Failure: []*kvdbv1.ExecuteOp{put(&kvdbv1.PutRequest{Key: []byte("other"), Lease: 999})},
		})
	}
	before := time.Now().UnixMilli()
	r, err := lock(&kvdbv1.PutRequest{Key: []byte("lock"), Value: []byte("me"), TtlMs: 60_000})
	if err != nil || !r.GetSucceeded() {
		t.Fatalf("lock = %v, %v", r, err)
	}
	kv, ok := n.srv.Store().Get([]byte("lock"))
	if !ok || kv.Deadline < before+60_000 || kv.Deadline > time.Now().UnixMilli()+60_001 { // rounded up to the millisecond
		t.Fatalf("lock's deadline = %d, want now + 60 s", kv.Deadline)
	}

	leases := kvdbv1.NewLeaseServiceClient(n.conn)
	g, err := leases.LeaseGrant(ctx, &kvdbv1.LeaseGrantRequest{Ttl: 600})
	if err != nil {
		t.Fatal(err)
	}
	r, err = lock(&kvdbv1.PutRequest{Key: []byte("session"), Value: []byte("me"), Lease: g.GetId()})
	if err != nil || !r.GetSucceeded() {
		t.Fatalf("lock with a lease = %v, %v", r, err)
	}
	if kv, ok := n.srv.Store().Get([]byte("session")); !ok || kv.Lease != g.GetId() {
		t.Fatalf("session = %+v, %v; want it attached to lease %d", kv, ok, g.GetId())
	}
	if _, err := leases.LeaseRevoke(ctx, &kvdbv1.LeaseRevokeRequest{Id: g.GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, ok := n.srv.Store().Get([]byte("session")); ok {
		t.Fatal("revoking the lease left the key a transaction attached to it")
	}

	rev := n.srv.Store().Revision()
	_, err = lock(&kvdbv1.PutRequest{Key: []byte("l2"), Value: []byte("v")},
		put(&kvdbv1.PutRequest{Key: []byte("l3"), Lease: g.GetId()}))
	wantCode(t, err, codes.NotFound, "op 1: requested lease not found")
	for _, tc := range []struct {
		p    *kvdbv1.PutRequest
		want string
	}{
		{&kvdbv1.PutRequest{Key: []byte("l2"), TtlMs: -1}, "success op 0: ttl_ms -1"},
		{&kvdbv1.PutRequest{Key: []byte("l2"), TtlMs: math.MaxInt64}, "max-ttl"},
		{&kvdbv1.PutRequest{Key: []byte("l2"), Lease: -3}, "success op 0: lease id must not be negative"},
		{&kvdbv1.PutRequest{Key: []byte("l2"), Lease: g.GetId(), TtlMs: 1000}, "a ttl or a lease, not both"},
	} {
		_, err := lock(tc.p)
		wantCode(t, err, codes.InvalidArgument, tc.want)
	}
	if _, ok := n.srv.Store().Get([]byte("l2")); ok || n.srv.Store().Revision() != rev {
		t.Fatalf("a refused Execute wrote l2 (revision %d, was %d)", n.srv.Store().Revision(), rev)
	}
}

// TestBatchAtomicWhenOneOpInvalid: a batch with one bad op applies nothing,
// and a good batch applies every op at one revision.
func TestBatchAtomicWhenOneOpInvalid(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	mustPut(t, n, "k3", "old")
	rev := n.srv.Store().Revision()
	put := func(k, v string) *kvdbv1.BatchOp {
		return &kvdbv1.BatchOp{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: []byte(k), Value: []byte(v)}}}
	}
	del := &kvdbv1.BatchOp{Op: &kvdbv1.BatchOp_Delete{Delete: &kvdbv1.BatchDelete{Key: []byte("k3")}}}
	for _, bad := range []*kvdbv1.BatchOp{put("", "v"), put(strings.Repeat("x", 5000), "v"), {}} {
		_, err := n.kv.Batch(context.Background(), &kvdbv1.BatchRequest{Ops: []*kvdbv1.BatchOp{put("k1", "v1"), del, bad, put("k2", "v2")}})
		wantCode(t, err, codes.InvalidArgument, "op 2")
		if n.srv.Store().Revision() != rev || n.srv.Store().Len() != 1 {
			t.Fatal("a batch with an invalid op applied something")
		}
	}
	resp, err := n.kv.Batch(context.Background(), &kvdbv1.BatchRequest{Ops: []*kvdbv1.BatchOp{put("k1", "v1"), put("k2", "v2"), del}})
	if err != nil || resp.GetHeader().GetRevision() != rev+1 {
		t.Fatalf("Batch = %v, %v", resp, err)
	}
	for _, k := range []string{"k1", "k2"} {
		kv, _ := n.srv.Store().Get([]byte(k))
		if kv.ModRevision != rev+1 {
			t.Fatalf("%s at revision %d, want %d", k, kv.ModRevision, rev+1)
		}
	}
}

// retryTxn runs body in fresh transactions until one commits, retrying on
// ABORTED; bounded by attempts and ctx.
func retryTxn(ctx context.Context, c kvdbv1.TxnServiceClient, body func(ctx context.Context, id string) error) (attempts int, err error) {
	for attempts = 1; attempts <= 10_000; attempts++ {
		if err := ctx.Err(); err != nil {
			return attempts, err
		}
		b, err := c.Begin(ctx, &kvdbv1.BeginRequest{})
		if err != nil {
			return attempts, err
		}
		if err := body(ctx, b.GetTxnId()); err != nil {
			_, _ = c.Rollback(ctx, &kvdbv1.RollbackRequest{TxnId: b.GetTxnId()})
			return attempts, err
		}
		_, err = c.Commit(ctx, &kvdbv1.CommitRequest{TxnId: b.GetTxnId()})
		if status.Code(err) != codes.Aborted {
			return attempts, err
		}
	}
	return attempts, errors.New("transaction still conflicting after 10,000 attempts")
}

// readInt reads key inside txn id as an integer (0 when absent).
func readInt(ctx context.Context, c kvdbv1.TxnServiceClient, id, key string) (int, error) {
	r, err := c.Get(ctx, &kvdbv1.TxnServiceGetRequest{TxnId: id, Key: []byte(key)})
	if status.Code(err) == codes.NotFound {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(r.GetKv().GetValue()))
}

func writeInt(ctx context.Context, c kvdbv1.TxnServiceClient, id, key string, v int) error {
	_, err := c.Put(ctx, &kvdbv1.TxnServicePutRequest{TxnId: id, Key: []byte(key), Value: []byte(strconv.Itoa(v))})
	return err
}

func TestTxnNoLostUpdate(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	c := txnClient(n)
	const clients, each = 10, 20
	// A bound, not a timing: 200 contended read-modify-write transactions
	// with retries take seconds on a loaded 2-core -race run.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errC := make(chan error, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				_, err := retryTxn(ctx, c, func(ctx context.Context, id string) error {
					v, err := readInt(ctx, c, id, "counter")
					if err != nil {
						return err
					}
					return writeInt(ctx, c, id, "counter", v+1)
				})
				if err != nil {
					errC <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errC)
	for err := range errC {
		t.Fatal(err)
	}
	if v, _ := mustGet(t, n, "counter"); v != strconv.Itoa(clients*each) {
		t.Fatalf("counter = %s, want %d", v, clients*each)
	}
	if st := n.srv.Stats().GetTransactions(); st.GetCommits() != clients*each {
		t.Fatalf("commits = %d, want %d", st.GetCommits(), clients*each)
	}
}

func TestTxnWriteSkewCannotBothCommit(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	c := txnClient(n)
	// The invariant x + y >= 1 holds; each doctor goes off call only if the
	// other is on call.
	mustPut(t, n, "x", "1")
	mustPut(t, n, "y", "1")
	t1, t2 := begin(t, c, "t1"), begin(t, c, "t2")
	for _, id := range []string{t1, t2} {
		txnGet(t, c, id, "x")
		txnGet(t, c, id, "y")
	}
	txnPut(t, c, t1, "x", "0")
	txnPut(t, c, t2, "y", "0")
	err1, err2 := commit(c, t1), commit(c, t2)
	if err1 != nil {
		t.Fatalf("first commit: %v", err1)
	}
	wantCode(t, err2, codes.Aborted, `key "x"`)
	x, _ := mustGet(t, n, "x")
	y, _ := mustGet(t, n, "y")
	if x == "0" && y == "0" {
		t.Fatal("write skew: both committed")
	}
}

// TestExecuteDuplicateKeys: a branch that writes one key twice (two puts,
// or a put inside a delete of the same branch) is refused as etcd refuses
// it; deletes may overlap, and the two branches are separate.
func TestExecuteDuplicateKeys(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	c := txnClient(n)
	put := func(k string) *kvdbv1.ExecuteOp {
		return &kvdbv1.ExecuteOp{Op: &kvdbv1.ExecuteOp_Put{Put: &kvdbv1.PutRequest{Key: []byte(k), Value: []byte("v")}}}
	}
	del := func(k, end string, prefix bool) *kvdbv1.ExecuteOp {
		return &kvdbv1.ExecuteOp{Op: &kvdbv1.ExecuteOp_Delete{Delete: &kvdbv1.DeleteRequest{Key: []byte(k), RangeEnd: []byte(end), Prefix: prefix}}}
	}
	for _, tc := range []struct {
		name             string
		success, failure []*kvdbv1.ExecuteOp
		want             string // "" means accepted
	}{
		{"two puts", []*kvdbv1.ExecuteOp{put("a"), put("b"), put("a")}, nil, "success ops 0 and 2: duplicate key"},
		{"put and delete", []*kvdbv1.ExecuteOp{del("a", "", false), put("a")}, nil, "both put and deleted"},
		{"put in a deleted range", nil, []*kvdbv1.ExecuteOp{put("k5"), del("k", "l", false)}, "failure ops 0 and 1: key \"k5\" is both"},
		{"put under a deleted prefix", []*kvdbv1.ExecuteOp{del("p/", "", true), put("p/x")}, nil, "both put and deleted"},
		{"put in a range to the end", []*kvdbv1.ExecuteOp{put("zz"), del("m", "\x00", false)}, nil, "both put and deleted"},
		{"overlapping deletes", []*kvdbv1.ExecuteOp{del("a", "c", false), del("b", "", false), put("c")}, nil, ""},
		{"one key per branch", []*kvdbv1.ExecuteOp{put("a")}, []*kvdbv1.ExecuteOp{put("a")}, ""},
		{"put beside a range", []*kvdbv1.ExecuteOp{del("k", "l", false), put("l")}, nil, ""},
	} {
		_, err := c.Execute(context.Background(), &kvdbv1.ExecuteRequest{Success: tc.success, Failure: tc.failure})
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.want) {
			t.Errorf("%s: %v, want INVALID_ARGUMENT containing %q", tc.name, err, tc.want)
		}
	}
}

// BenchmarkDuplicateKeys: the check of an Execute branch at the
// max-txn-ops limit, half puts and half single-key deletes, none of them
// overlapping.
func BenchmarkDuplicateKeys(b *testing.B) {
	ops := make([]core.TxnOp, DefaultLimits.MaxTxnOps)
	for i := range ops {
		ops[i] = core.TxnOp{Type: core.TxnPut, Key: fmt.Appendf(nil, "put/%06d", i)}
		if i%2 == 1 {
			ops[i] = core.TxnOp{Type: core.TxnDelete, Key: fmt.Appendf(nil, "del/%06d", i)}
		}
	}
	for b.Loop() {
		if err := duplicateKeys("success", ops); err != nil {
			b.Fatal(err)
		}
	}
}
