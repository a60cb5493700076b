package service

import (
	"context"
	"time"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/core"
)

// kvService implements kvdbv1.KVServiceServer: it translates each request
// into core's types and core's answer back, nothing more.
type kvService struct {
	kvdbv1.UnimplementedKVServiceServer
	s *Server
}

func serializable(c kvdbv1.Consistency) bool {
	return c == kvdbv1.Consistency_CONSISTENCY_SERIALIZABLE
}

func (k *kvService) Get(ctx context.Context, req *kvdbv1.GetRequest) (*kvdbv1.GetResponse, error) {
	kv, rev, err := k.s.core.Get(ctx, req.GetKey(), serializable(req.GetConsistency()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.GetResponse{Header: k.s.header(rev), Kv: toProtoKV(kv, false)}, nil
}

func (k *kvService) Put(ctx context.Context, req *kvdbv1.PutRequest) (*kvdbv1.PutResponse, error) {
	if ms, maxTTL := req.GetTtlMs(), k.s.core.Limits().MaxTTL; ms < 0 || ms > int64(maxTTL/time.Millisecond) {
		return nil, toStatus(core.Errorf(core.InvalidArgument, "ttl_ms %d is outside 0 to the max-ttl limit of %s", ms, maxTTL))
	}
	res, err := k.s.core.PutWith(ctx, req.GetKey(), req.GetValue(), req.GetPrevKv(),
		core.PutOptions{TTL: time.Duration(req.GetTtlMs()) * time.Millisecond, Lease: req.GetLease()})
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &kvdbv1.PutResponse{Header: k.s.header(res.Revision)}
	if len(res.Prev) > 0 {
		resp.PrevKv = toProtoKV(res.Prev[0], false)
	}
	return resp, nil
}

func (k *kvService) Delete(ctx context.Context, req *kvdbv1.DeleteRequest) (*kvdbv1.DeleteResponse, error) {
	res, err := k.s.core.Delete(ctx, req.GetKey(), req.GetRangeEnd(), req.GetPrefix(), req.GetPrevKv())
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.DeleteResponse{Header: k.s.header(res.Revision), Deleted: res.Deleted, PrevKvs: toProtoKVs(res.Prev, false)}, nil
}

func (k *kvService) Range(ctx context.Context, req *kvdbv1.RangeRequest) (*kvdbv1.RangeResponse, error) {
	r, err := k.s.core.Range(ctx, rangeRequest(req))
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &kvdbv1.RangeResponse{Header: k.s.header(r.Revision), More: r.More, Count: r.Count}
	if !req.GetCountOnly() {
		resp.Kvs = toProtoKVs(r.KVs, req.GetKeysOnly())
	}
	return resp, nil
}

func rangeRequest(req *kvdbv1.RangeRequest) core.RangeRequest {
	return core.RangeRequest{Key: req.GetKey(), End: req.GetRangeEnd(), Prefix: req.GetPrefix(), Limit: req.GetLimit(),
		KeysOnly: req.GetKeysOnly(), CountOnly: req.GetCountOnly(), Serializable: serializable(req.GetConsistency())}
}

func (k *kvService) Batch(ctx context.Context, req *kvdbv1.BatchRequest) (*kvdbv1.BatchResponse, error) {
	ops := make([]core.BatchOp, len(req.GetOps()))
	for i, op := range req.GetOps() {
		switch o := op.GetOp().(type) {
		case *kvdbv1.BatchOp_Put:
			ops[i] = core.BatchOp{Key: o.Put.GetKey(), Value: o.Put.GetValue()}
		case *kvdbv1.BatchOp_Delete:
			ops[i] = core.BatchOp{Delete: true, Key: o.Delete.GetKey()}
		default:
			return nil, toStatus(core.Errorf(core.InvalidArgument, "op %d: neither put nor delete", i))
		}
	}
	res, err := k.s.core.Batch(ctx, ops)
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.BatchResponse{Header: k.s.header(res.Revision), Puts: res.Puts, Deleted: res.Deleted}, nil
}

func toProtoKV(kv core.KeyValue, keysOnly bool) *kvdbv1.KeyValue {
	p := &kvdbv1.KeyValue{
		Key:            kv.Key,
		CreateRevision: kv.CreateRevision,
		ModRevision:    kv.ModRevision,
		Version:        kv.Version,
		Lease:          kv.Lease,
		DeadlineMs:     kv.Deadline,
	}
	if !keysOnly {
		p.Value = kv.Value
	}
	return p
}

func toProtoKVs(kvs []core.KeyValue, keysOnly bool) []*kvdbv1.KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	out := make([]*kvdbv1.KeyValue, len(kvs))
	for i, kv := range kvs {
		out[i] = toProtoKV(kv, keysOnly)
	}
	return out
}
