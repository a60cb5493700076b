package service

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/core"
	"github.com/kvdb/kvdb/internal/wire"
)

// parityStep is one operation written for both transports. Each side
// reduces its answer to the same text, so the table shows that gRPC and the
// binary protocol, both thin adapters over core, mean the same thing.
type parityStep struct {
	name string
	op   string // the STATS name the step is recorded under
	grpc func(ctx context.Context, n *testNode, st *parityState) (string, error)
	bin  *wire.Request
	// binShape reduces a successful binary reply (nil: "ok").
	binShape func(*wire.Response) string
}

type parityState struct{ txnID string }

func kvText(key, value []byte, mod int64) string { return fmt.Sprintf("%s=%s@%d", key, value, mod) }

// TestTransportParity runs the same table over gRPC on one node and over the
// binary protocol on another: every step must end with the same code, the
// same error text and the same result, and both nodes must record the same
// operation names.
func TestTransportParity(t *testing.T) {
	limits := Limits{MaxKeySize: 16, MaxValueSize: 64, MaxBatchOps: 3, MaxRequestSize: 512, MaxRangeLimit: 100}
	mutate := func(c *Config) { c.Limits = limits }
	g, b := startNode(t, t.TempDir(), mutate), startNode(t, t.TempDir(), mutate)
	raw := dialRaw(t, b.addr)
	ctx := ctxT(t)
	big := bytes.Repeat([]byte("x"), 65)
	revOnly := func(r *wire.Response) string { return fmt.Sprint("rev=", r.Revision) }
	rangeText := func(rev, count int64, more bool, kvs []string) string {
		return fmt.Sprintf("rev=%d count=%d more=%v %v", rev, count, more, kvs)
	}
	binRange := func(r *wire.Response) string {
		var kvs []string
		for _, kv := range r.KVs {
			kvs = append(kvs, kvText(kv.Key, kv.Value, kv.ModRevision))
		}
		return rangeText(r.Revision, r.Count, r.More, kvs)
	}
	grpcRange := func(resp *kvdbv1.RangeResponse) string {
		var kvs []string
		for _, kv := range resp.GetKvs() {
			kvs = append(kvs, kvText(kv.GetKey(), kv.GetValue(), kv.GetModRevision()))
		}
		return rangeText(resp.GetHeader().GetRevision(), resp.GetCount(), resp.GetMore(), kvs)
	}
	put := func(k, v string) func(context.Context, *testNode, *parityState) (string, error) {
		return func(ctx context.Context, n *testNode, _ *parityState) (string, error) {
			r, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte(k), Value: []byte(v)})
			return fmt.Sprint("rev=", r.GetHeader().GetRevision()), err
		}
	}
	steps := []parityStep{
		// Bad input: the same code and the same words on both.
		{"get empty key", "GET", func(ctx context.Context, n *testNode, _ *parityState) (string, error) {
			_, err := n.kv.Get(ctx, &kvdbv1.GetRequest{})
			return "", err
		}, &wire.Request{Op: wire.OpGet}, nil},
		{"get missing key", "GET", func(ctx context.Context, n *testNode, _ *parityState) (string, error) {
			_, err := n.kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte("nope")})
			return "", err
		}, &wire.Request{Op: wire.OpGet, Key: []byte("nope")}, nil},
		{"put key over the limit", "PUT", put(strings.Repeat("k", 17), "v"),
			&wire.Request{Op: wire.OpPut, Key: bytes.Repeat([]byte("k"), 17), Value: []byte("v")}, nil},
		{"put value over the limit", "PUT", put("k", string(big)),
			&wire.Request{Op: wire.OpPut, Key: []byte("k"), Value: big}, nil},
		{"delete with end before key", "DELETE", func(ctx context.Context, n *testNode, _ *parityState) (string, error) {
			_, err := n.kv.Delete(ctx, &kvdbv1.DeleteRequest{Key: []byte("b"), RangeEnd: []byte("a")})
			return "", err
		}, &wire.Request{Op: wire.OpDelete, Key: []byte("b"), End: []byte("a")}, nil},
		{"range with negative limit", "RANGE", func(ctx context.Context, n *testNode, _ *parityState) (string, error) {
			_, err := n.kv.Range(ctx, &kvdbv1.RangeRequest{Key: []byte("a"), Limit: -1})
			return "", err
		}, &wire.Request{Op: wire.OpRange, Key: []byte("a"), Limit: -1}, nil},
		{"range with empty key", "RANGE", func(ctx context.Context, n *testNode, _ *parityState) (string, error) {
			_, err := n.kv.Range(ctx, &kvdbv1.RangeRequest{RangeEnd: []byte("z")})
			return "", err
		}, &wire.Request{Op: wire.OpRange, End: []byte("z")}, nil},
		{"batch over max ops", "BATCH", func(ctx context.Context, n *testNode, _ *parityState) (string, error) {
			req := &kvdbv1.BatchRequest{}
			for i := range 4 {
				req.Ops = append(req.Ops, &kvdbv1.BatchOp{Op: &kvdbv1.BatchOp_Delete{Delete: &kvdbv1.BatchDelete{Key: []byte(fmt.Sprint(i))}}})
			}
			_, err := n.kv.Batch(ctx, req)
			return "", err
		}, &wire.Request{Op: wire.OpBatch, Ops: []wire.BatchOp{{Type: wire.BatchDelete, Key: []byte("0")}, {Type: wire.BatchDelete, Key: []byte("1")},
			{Type: wire.BatchDelete, Key: []byte("2")}, {Type: wire.BatchDelete, Key: []byte("3")}}}, nil},
		{"batch op with empty key", "BATCH", func(ctx context.Context, n *testNode, _ *parityState) (string, error) {
			_, err := n.kv.Batch(ctx, &kvdbv1.BatchRequest{Ops: []*kvdbv1.BatchOp{{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Value: []byte("v")}}}}})
			return "", err
		}, &wire.Request{Op: wire.OpBatch, Ops: []wire.BatchOp{{Type: wire.BatchPut, Value: []byte("v")}}}, nil},
		{"txn compare with empty key", "EXECUTE", func(ctx context.Context, n *testNode, _ *parityState) (string, error) {
			_, err := kvdbv1.NewTxnServiceClient(n.conn).Execute(ctx, &kvdbv1.ExecuteRequest{Compares: []*kvdbv1.Compare{
				{Operator: kvdbv1.CompareOperator_COMPARE_OPERATOR_EQUAL, Operand: &kvdbv1.Compare_Version{Version: 0}}}})
			return "", err
		}, &wire.Request{Op: wire.OpTxn, Compares: []wire.Compare{{Target: wire.TargetVersion, Result: wire.CompareEqual}}}, nil},

		// Operations that succeed: the same revisions and results.
		{"put a", "PUT", put("a", "1"), &wire.Request{Op: wire.OpPut, Key: []byte("a"), Value: []byte("1")}, revOnly},
		{"put b", "PUT", put("b", "2"), &wire.Request{Op: wire.OpPut, Key: []byte("b"), Value: []byte("2")}, revOnly},
		{"put a with prev", "PUT", func(ctx context.Context, n *testNode, _ *parityState) (string, error) {
			r, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte("a"), Value: []byte("3"), PrevKv: true})
			return fmt.Sprint("rev=", r.GetHeader().GetRevision(), " prev=", kvText(r.GetPrevKv().GetKey(), r.GetPrevKv().GetValue(), r.GetPrevKv().GetModRevision())), err
		}, &wire.Request{Op: wire.OpPut, Flags: wire.FlagPrevKV, Key: []byte("a"), Value: []byte("3")}, func(r *wire.Response) string {
			return fmt.Sprint("rev=", r.Revision, " prev=", kvText(r.KV.Key, r.KV.Value, r.KV.ModRevision))
		}},
		{"get a", "GET", func(ctx context.Context, n *testNode, _ *parityState) (string, error) {
			r, err := n.kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte("a")})
			return kvText(r.GetKv().GetKey(), r.GetKv().GetValue(), r.GetKv().GetModRevision()), err
		}, &wire.Request{Op: wire.OpGet, Key: []byte("a")}, func(r *wire.Response) string { return kvText(r.KV.Key, r.KV.Value, r.KV.ModRevision) }},
		{"range limited", "RANGE", func(ctx context.Context, n *testNode, _ *parityState) (string, error) {
			r, err := n.kv.Range(ctx, &kvdbv1.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 1})
			return grpcRange(r), err
		}, &wire.Request{Op: wire.OpRange, Key: []byte("a"), End: []byte("z"), Limit: 1}, binRange},
		{"range everything", "RANGE", func(ctx context.Context, n *testNode, _ *parityState) (string, error) {
			r, err := n.kv.Range(ctx, &kvdbv1.RangeRequest{Prefix: true})
			return grpcRange(r), err
		}, &wire.Request{Op: wire.OpRange, Flags: wire.FlagPrefix}, binRange},
		{"batch", "BATCH", func(ctx context.Context, n *testNode, _ *parityState) (string, error) {
			r, err := n.kv.Batch(ctx, &kvdbv1.BatchRequest{Ops: []*kvdbv1.BatchOp{
				{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: []byte("c"), Value: []byte("4")}}},
				{Op: &kvdbv1.BatchOp_Delete{Delete: &kvdbv1.BatchDelete{Key: []byte("b")}}}}})
			return fmt.Sprint("rev=", r.GetHeader().GetRevision(), " puts=", r.GetPuts(), " deleted=", r.GetDeleted()), err
		}, &wire.Request{Op: wire.OpBatch, Ops: []wire.BatchOp{{Type: wire.BatchPut, Key: []byte("c"), Value: []byte("4")}, {Type: wire.BatchDelete, Key: []byte("b")}}},
			func(r *wire.Response) string {
				return fmt.Sprint("rev=", r.Revision, " puts=", r.Puts, " deleted=", r.Deleted)
			}},
		{"txn compare-and-swap", "EXECUTE", func(ctx context.Context, n *testNode, _ *parityState) (string, error) {
			r, err := kvdbv1.NewTxnServiceClient(n.conn).Execute(ctx, &kvdbv1.ExecuteRequest{
				Compares: []*kvdbv1.Compare{{Key: []byte("a"), Operator: kvdbv1.CompareOperator_COMPARE_OPERATOR_EQUAL, Operand: &kvdbv1.Compare_Value{Value: []byte("3")}}},
				Success:  []*kvdbv1.ExecuteOp{{Op: &kvdbv1.ExecuteOp_Put{Put: &kvdbv1.PutRequest{Key: []byte("a"), Value: []byte("5")}}}}})
			return fmt.Sprint("rev=", r.GetHeader().GetRevision(), " succeeded=", r.GetSucceeded()), err
		}, &wire.Request{Op: wire.OpTxn, Compares: []wire.Compare{{Key: []byte("a"), Target: wire.TargetValue, Result: wire.CompareEqual, Value: []byte("3")}},
			Ops: []wire.BatchOp{{Type: wire.BatchPut, Key: []byte("a"), Value: []byte("5")}}},
			func(r *wire.Response) string { return fmt.Sprint("rev=", r.Revision, " succeeded=", r.Succeeded) }},
		{"begin", "BEGIN", func(ctx context.Context, n *testNode, st *parityState) (string, error) {
			r, err := kvdbv1.NewTxnServiceClient(n.conn).Begin(ctx, &kvdbv1.BeginRequest{})
			st.txnID = r.GetTxnId()
			return "ok", err // the binary BEGIN reply carries the id only
		}, &wire.Request{Op: wire.OpBegin}, nil},
		{"txn get", "TXN_GET", func(ctx context.Context, n *testNode, st *parityState) (string, error) {
			r, err := kvdbv1.NewTxnServiceClient(n.conn).Get(ctx, &kvdbv1.TxnServiceGetRequest{TxnId: st.txnID, Key: []byte("a")})
			return kvText(r.GetKv().GetKey(), r.GetKv().GetValue(), r.GetKv().GetModRevision()), err
		}, &wire.Request{Op: wire.OpGet, Flags: wire.FlagInTxn, Key: []byte("a")}, func(r *wire.Response) string { return kvText(r.KV.Key, r.KV.Value, r.KV.ModRevision) }},
		{"txn put over the limit", "TXN_PUT", func(ctx context.Context, n *testNode, st *parityState) (string, error) {
			_, err := kvdbv1.NewTxnServiceClient(n.conn).Put(ctx, &kvdbv1.TxnServicePutRequest{TxnId: st.txnID, Key: []byte("a"), Value: big})
			return "", err
		}, &wire.Request{Op: wire.OpPut, Flags: wire.FlagInTxn, Key: []byte("a"), Value: big}, nil},
		{"txn put", "TXN_PUT", func(ctx context.Context, n *testNode, st *parityState) (string, error) {
			_, err := kvdbv1.NewTxnServiceClient(n.conn).Put(ctx, &kvdbv1.TxnServicePutRequest{TxnId: st.txnID, Key: []byte("d"), Value: []byte("6")})
			return "ok", err
		}, &wire.Request{Op: wire.OpPut, Flags: wire.FlagInTxn, Key: []byte("d"), Value: []byte("6")}, nil},
		{"txn range sees its own write", "TXN_RANGE", func(ctx context.Context, n *testNode, st *parityState) (string, error) {
			r, err := kvdbv1.NewTxnServiceClient(n.conn).Range(ctx, &kvdbv1.TxnServiceRangeRequest{TxnId: st.txnID, Key: []byte("c"), RangeEnd: []byte("e")})
			var kvs []string
			for _, kv := range r.GetKvs() {
				kvs = append(kvs, kvText(kv.GetKey(), kv.GetValue(), kv.GetModRevision()))
			}
			return fmt.Sprint(kvs, " more=", r.GetMore()), err
		}, &wire.Request{Op: wire.OpRange, Flags: wire.FlagInTxn, Key: []byte("c"), End: []byte("e")}, func(r *wire.Response) string {
			var kvs []string
			for _, kv := range r.KVs {
				kvs = append(kvs, kvText(kv.Key, kv.Value, kv.ModRevision))
			}
			return fmt.Sprint(kvs, " more=", r.More)
		}},
		{"commit", "COMMIT", func(ctx context.Context, n *testNode, st *parityState) (string, error) {
			r, err := kvdbv1.NewTxnServiceClient(n.conn).Commit(ctx, &kvdbv1.CommitRequest{TxnId: st.txnID})
			return fmt.Sprint("rev=", r.GetHeader().GetRevision()), err
		}, &wire.Request{Op: wire.OpCommit}, revOnly},
		{"delete prefix with prev", "DELETE", func(ctx context.Context, n *testNode, _ *parityState) (string, error) {
			r, err := n.kv.Delete(ctx, &kvdbv1.DeleteRequest{Key: []byte("c"), Prefix: true, PrevKv: true})
			var prev []string
			for _, kv := range r.GetPrevKvs() {
				prev = append(prev, kvText(kv.GetKey(), kv.GetValue(), kv.GetModRevision()))
			}
			return fmt.Sprint("rev=", r.GetHeader().GetRevision(), " deleted=", r.GetDeleted(), " ", prev), err
		}, &wire.Request{Op: wire.OpDelete, Flags: wire.FlagPrefix | wire.FlagPrevKV, Key: []byte("c")}, func(r *wire.Response) string {
			var prev []string
			for _, kv := range r.KVs {
				prev = append(prev, kvText(kv.Key, kv.Value, kv.ModRevision))
			}
			return fmt.Sprint("rev=", r.Revision, " deleted=", r.Deleted, " ", prev)
		}},
	}

	var st parityState
	for i, s := range steps {
		gotG, errG := s.grpc(ctx, g, &st)
		req := *s.bin
		req.ID = uint64(i + 1)
		resp := raw.call(&req)
		if uint32(Code(errG)) != uint32(resp.Status) {
			t.Errorf("%s: gRPC %v (%v), binary %v (%s)", s.name, Code(errG), errG, resp.Status, resp.Payload)
			continue
		}
		if errG != nil {
			if msg := status.Convert(errG).Message(); msg != string(resp.Payload) {
				t.Errorf("%s: gRPC says %q, binary %q", s.name, msg, resp.Payload)
			}
			continue
		}
		gotB := "ok"
		if s.binShape != nil {
			gotB = s.binShape(resp)
		}
		if gotG != gotB {
			t.Errorf("%s: gRPC %s, binary %s", s.name, gotG, gotB)
		}
	}
	if g.srv.Store().Hash() != b.srv.Store().Hash() {
		t.Error("the two nodes hold different data after the same operations")
	}

	// Both nodes recorded every step under the same names.
	want := map[string]bool{}
	for _, s := range steps {
		want[s.op] = true
	}
	for name, n := range map[string]*testNode{"gRPC": g, "binary": b} {
		_, ops := n.srv.ops.snapshot()
		var got []string
		for _, o := range ops {
			got = append(got, o.Name)
		}
		var wantNames []string
		for op := range want {
			wantNames = append(wantNames, op)
		}
		slices.Sort(wantNames)
		if fmt.Sprint(got) != fmt.Sprint(wantNames) {
			t.Errorf("%s node recorded %v, want %v", name, got, wantNames)
		}
	}
	// Every name recorded is one of core's.
	known := map[string]bool{}
	for _, op := range core.Ops() {
		known[op.String()] = true
	}
	for op := range want {
		if !known[op] {
			t.Errorf("step name %s is not a core operation", op)
		}
	}
}
