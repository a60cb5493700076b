package service

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

func TestBadInputCodes(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) {
		c.Limits = Limits{MaxKeySize: 16, MaxValueSize: 64, MaxBatchOps: 3, MaxRequestSize: 512}
	})
	ctx := ctxT(t)
	big := func(n int) []byte { return bytes.Repeat([]byte("x"), n) }
	put := func(k, v []byte) error { _, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: k, Value: v}); return err }
	batch := func(ops int, valueSize int) error {
		req := &kvdbv1.BatchRequest{}
		for i := 0; i < ops; i++ {
			req.Ops = append(req.Ops, &kvdbv1.BatchOp{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: []byte(fmt.Sprint("k", i)), Value: big(valueSize)}}})
		}
		_, err := n.kv.Batch(ctx, req)
		return err
	}
	tests := []struct {
		name     string
		call     func() error
		code     codes.Code
		contains string
	}{
		{"empty key put", func() error { return put(nil, []byte("v")) }, codes.InvalidArgument, "key must not be empty"},
		{"empty key get", func() error { _, err := n.kv.Get(ctx, &kvdbv1.GetRequest{}); return err }, codes.InvalidArgument, "key must not be empty"},
		{"empty key delete", func() error { _, err := n.kv.Delete(ctx, &kvdbv1.DeleteRequest{}); return err }, codes.InvalidArgument, "key must not be empty"},
		{"oversize key", func() error { return put(big(17), nil) }, codes.InvalidArgument, "max-key-size limit of 16"},
		{"key at limit", func() error { return put(big(16), nil) }, codes.OK, ""},
		{"oversize value", func() error { return put([]byte("k"), big(65)) }, codes.InvalidArgument, "max-value-size limit of 64"},
		{"value at limit", func() error { return put([]byte("k"), big(64)) }, codes.OK, ""},
		{"batch too many ops", func() error { return batch(4, 1) }, codes.InvalidArgument, "max-batch-ops limit of 3"},
		{"batch at op limit", func() error { return batch(3, 1) }, codes.OK, ""},
		{"batch value too large", func() error { return batch(3, 100) }, codes.InvalidArgument, "max-value-size"},
		{"empty batch", func() error { return batch(0, 1) }, codes.InvalidArgument, "no operations"},
		{"batch oversize request", func() error {
			// Within every per-op limit but over max-request-size in total.
			req := &kvdbv1.BatchRequest{}
			for i := 0; i < 3; i++ {
				req.Ops = append(req.Ops, &kvdbv1.BatchOp{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: big(16), Value: big(64)}}})
			}
			l := n.srv.core.Limits()
			small := l
			small.MaxRequestSize = 200
			n.srv.core.SetLimits(small)
			defer n.srv.core.SetLimits(l)
			_, err := n.kv.Batch(ctx, req)
			return err
		}, codes.InvalidArgument, "max-request-size limit of 200"},
		{"batch with empty key", func() error {
			_, err := n.kv.Batch(ctx, &kvdbv1.BatchRequest{Ops: []*kvdbv1.BatchOp{
				{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: []byte("a"), Value: []byte("1")}}},
				{Op: &kvdbv1.BatchOp_Delete{Delete: &kvdbv1.BatchDelete{}}},
			}})
			return err
		}, codes.InvalidArgument, "op 1: key must not be empty"},
		{"batch op without kind", func() error {
			_, err := n.kv.Batch(ctx, &kvdbv1.BatchRequest{Ops: []*kvdbv1.BatchOp{{}}})
			return err
		}, codes.InvalidArgument, "neither put nor delete"},
		{"range end before key", func() error {
			_, err := n.kv.Range(ctx, &kvdbv1.RangeRequest{Key: []byte("b"), RangeEnd: []byte("a")})
			return err
		}, codes.InvalidArgument, ""},
		{"negative limit", func() error {
			_, err := n.kv.Range(ctx, &kvdbv1.RangeRequest{Key: []byte("a"), Limit: -1})
			return err
		}, codes.InvalidArgument, "limit"},
		{"missing key", func() error { _, err := n.kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte("nope")}); return err }, codes.NotFound, "key not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if got := status.Code(err); got != tc.code {
				t.Fatalf("code = %v, want %v (err %v)", got, tc.code, err)
			}
			if tc.contains != "" && !strings.Contains(status.Convert(err).Message(), tc.contains) {
				t.Fatalf("message %q does not contain %q", status.Convert(err).Message(), tc.contains)
			}
		})
	}
	// The failed batch with an empty key applied nothing: "a" is absent.
	if _, err := n.kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte("a")}); status.Code(err) != codes.NotFound {
		t.Fatalf("a partial batch was applied: %v", err)
	}
}

func TestRangeAndBatch(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx := ctxT(t)
	req := &kvdbv1.BatchRequest{}
	for _, k := range []string{"a", "app:1", "app:2", "app:3", "b"} {
		req.Ops = append(req.Ops, &kvdbv1.BatchOp{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: []byte(k), Value: []byte("v-" + k)}}})
	}
	resp, err := n.kv.Batch(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetPuts() != 5 || resp.GetHeader().GetRevision() != 1 {
		t.Fatalf("batch response %v: all puts must share revision 1", resp)
	}
	tests := []struct {
		name  string
		req   *kvdbv1.RangeRequest
		keys  string
		more  bool
		count int64
	}{
		{"prefix", &kvdbv1.RangeRequest{Key: []byte("app:"), Prefix: true}, "app:1,app:2,app:3", false, 3},
		{"half open", &kvdbv1.RangeRequest{Key: []byte("a"), RangeEnd: []byte("app:3")}, "a,app:1,app:2", false, 3},
		{"single", &kvdbv1.RangeRequest{Key: []byte("b")}, "b", false, 1},
		{"to end", &kvdbv1.RangeRequest{Key: []byte("app:2"), RangeEnd: []byte{0}}, "app:2,app:3,b", false, 3},
		{"everything", &kvdbv1.RangeRequest{Prefix: true}, "a,app:1,app:2,app:3,b", false, 5},
		{"limit", &kvdbv1.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, Limit: 2}, "a,app:1", true, 5},
		{"count only", &kvdbv1.RangeRequest{Key: []byte("app:"), Prefix: true, CountOnly: true}, "", false, 3},
		{"serializable", &kvdbv1.RangeRequest{Key: []byte("app:"), Prefix: true, Consistency: kvdbv1.Consistency_CONSISTENCY_SERIALIZABLE}, "app:1,app:2,app:3", false, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := n.kv.Range(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, kv := range r.GetKvs() {
				keys = append(keys, string(kv.GetKey()))
				if string(kv.GetValue()) != "v-"+string(kv.GetKey()) {
					t.Fatalf("value of %s = %q", kv.GetKey(), kv.GetValue())
				}
			}
			if got := strings.Join(keys, ","); got != tc.keys || r.GetMore() != tc.more || r.GetCount() != tc.count {
				t.Fatalf("got keys=%q more=%v count=%d, want %q %v %d", got, r.GetMore(), r.GetCount(), tc.keys, tc.more, tc.count)
			}
		})
	}
	r, err := n.kv.Range(ctx, &kvdbv1.RangeRequest{Key: []byte("a"), KeysOnly: true})
	if err != nil || len(r.GetKvs()) != 1 || len(r.GetKvs()[0].GetValue()) != 0 {
		t.Fatalf("keys only: %v %v", r, err)
	}
	del, err := n.kv.Delete(ctx, &kvdbv1.DeleteRequest{Key: []byte("app:"), Prefix: true, PrevKv: true})
	if err != nil || del.GetDeleted() != 3 || len(del.GetPrevKvs()) != 3 {
		t.Fatalf("prefix delete: %v %v", del, err)
	}
	mixed, err := n.kv.Batch(ctx, &kvdbv1.BatchRequest{Ops: []*kvdbv1.BatchOp{
		{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: []byte("c"), Value: []byte("1")}}},
		{Op: &kvdbv1.BatchOp_Delete{Delete: &kvdbv1.BatchDelete{Key: []byte("a")}}},
		{Op: &kvdbv1.BatchOp_Delete{Delete: &kvdbv1.BatchDelete{Key: []byte("zz")}}},
	}})
	if err != nil || mixed.GetPuts() != 1 || mixed.GetDeleted() != 1 {
		t.Fatalf("mixed batch: %v %v", mixed, err)
	}
}

func TestStatusAndStats(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) { c.MaxMemory = 1 << 30; c.Address = ":8080" })
	ctx := ctxT(t)
	for i := 0; i < 5; i++ {
		if _, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte(fmt.Sprint("k", i)), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		if _, err := n.kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte("k1")}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := n.admin.Status(ctx, &kvdbv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !st.GetIsLeader() || st.GetNodeId() != "node1" || st.GetLeaderId() != "node1" || st.GetTerm() == 0 ||
		st.GetAppliedIndex() < 6 || st.GetKeys() != 5 || st.GetRaftState() != "leader" {
		t.Fatalf("status = %v", st)
	}
	stats, err := n.admin.Stats(ctx, &kvdbv1.StatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if stats.GetStorage().GetKeys() != 5 || stats.GetStorage().GetMaxMemory() != 1<<30 || stats.GetStorage().GetVersion() != 5 ||
		stats.GetStorage().GetMemoryUsage() <= 0 {
		t.Fatalf("storage = %v", stats.GetStorage())
	}
	if stats.GetRaft().GetState() != 2 || stats.GetRaft().GetNodeId() != "node1" || stats.GetRaft().GetCommitIndex() < 6 {
		t.Fatalf("raft = %v", stats.GetRaft())
	}
	ops := stats.GetMetrics().GetOperations()
	if ops["PUT"].GetCount() != 5 || ops["GET"].GetCount() != 3 {
		t.Fatalf("operations = %v", ops)
	}
	if stats.GetNetwork().GetTotalRequests() != 8 || stats.GetNetwork().GetActiveConnections() < 1 || stats.GetNetwork().GetAddress() != ":8080" {
		t.Fatalf("network = %v", stats.GetNetwork())
	}
}
