package service

import (
	"context"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/engine"
)

// kvService implements kvdbv1.KVServiceServer.
type kvService struct {
	kvdbv1.UnimplementedKVServiceServer
	s *Server
}

func (k *kvService) Get(ctx context.Context, req *kvdbv1.GetRequest) (*kvdbv1.GetResponse, error) {
	if err := k.s.limits.checkKey(req.GetKey()); err != nil {
		return nil, toStatus(err)
	}
	if err := k.s.waitRead(ctx, req.GetConsistency()); err != nil {
		return nil, toStatus(err)
	}
	kv, ok := k.s.store.Get(req.GetKey())
	if !ok {
		return nil, toStatus(ErrKeyNotFound)
	}
	return &kvdbv1.GetResponse{Header: k.s.header(k.s.store.Revision()), Kv: toProtoKV(kv, false)}, nil
}

func (k *kvService) Put(ctx context.Context, req *kvdbv1.PutRequest) (*kvdbv1.PutResponse, error) {
	if err := k.s.limits.checkKey(req.GetKey()); err != nil {
		return nil, toStatus(err)
	}
	if err := k.s.limits.checkValue(req.GetValue()); err != nil {
		return nil, toStatus(err)
	}
	res, err := k.s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_Put{Put: &raftv1.PutCommand{
		Key: req.GetKey(), Value: req.GetValue(), PrevKv: req.GetPrevKv(),
	}}}, entryGrowth(req.GetKey(), req.GetValue()))
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &kvdbv1.PutResponse{Header: k.s.header(res.Revision)}
	if req.GetPrevKv() && len(res.Ops) > 0 && len(res.Ops[0].Prev) > 0 {
		resp.PrevKv = toProtoKV(res.Ops[0].Prev[0], false)
	}
	return resp, nil
}

func (k *kvService) Delete(ctx context.Context, req *kvdbv1.DeleteRequest) (*kvdbv1.DeleteResponse, error) {
	key, end := req.GetKey(), req.GetRangeEnd()
	if err := k.s.limits.checkKey(key); err != nil {
		return nil, toStatus(err)
	}
	if req.GetPrefix() {
		end = engine.PrefixEnd(key)
	}
	if err := k.s.limits.checkRangeEnd(key, end); err != nil {
		return nil, toStatus(err)
	}
	res, err := k.s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_Delete{Delete: &raftv1.DeleteCommand{
		Key: key, RangeEnd: end, PrevKv: req.GetPrevKv(),
	}}}, 0)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &kvdbv1.DeleteResponse{Header: k.s.header(res.Revision)}
	if len(res.Ops) > 0 {
		resp.Deleted = res.Ops[0].Deleted
		for _, kv := range res.Ops[0].Prev {
			resp.PrevKvs = append(resp.PrevKvs, toProtoKV(kv, false))
		}
	}
	return resp, nil
}

func (k *kvService) Range(ctx context.Context, req *kvdbv1.RangeRequest) (*kvdbv1.RangeResponse, error) {
	key, end, err := k.s.rangeBounds(req.GetKey(), req.GetRangeEnd(), req.GetPrefix())
	if err != nil {
		return nil, toStatus(err)
	}
	limit, err := k.s.rangeLimit(req.GetLimit())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := k.s.waitRead(ctx, req.GetConsistency()); err != nil {
		return nil, toStatus(err)
	}
	r := k.s.store.Range(key, end, engine.RangeOptions{Limit: limit, KeysOnly: req.GetKeysOnly(), CountOnly: req.GetCountOnly()})
	resp := &kvdbv1.RangeResponse{Header: k.s.header(r.Revision), More: r.More, Count: r.Count}
	if !req.GetCountOnly() {
		resp.Kvs = make([]*kvdbv1.KeyValue, len(r.KVs))
		for i, kv := range r.KVs {
			resp.Kvs[i] = toProtoKV(kv, req.GetKeysOnly())
		}
	}
	return resp, nil
}

func (k *kvService) Batch(ctx context.Context, req *kvdbv1.BatchRequest) (*kvdbv1.BatchResponse, error) {
	ops := req.GetOps()
	if len(ops) == 0 {
		return nil, toStatus(invalidf("batch has no operations"))
	}
	if len(ops) > k.s.limits.MaxBatchOps {
		return nil, toStatus(invalidf("batch has %d operations, over the max-batch-ops limit of %d", len(ops), k.s.limits.MaxBatchOps))
	}
	if err := k.s.limits.checkRequestSize(proto.Size(req)); err != nil {
		return nil, toStatus(err)
	}
	cmd := &raftv1.BatchCommand{Ops: make([]*raftv1.BatchCommandOp, len(ops))}
	for i, op := range ops {
		switch o := op.GetOp().(type) {
		case *kvdbv1.BatchOp_Put:
			if err := k.s.limits.checkKey(o.Put.GetKey()); err != nil {
				return nil, toStatus(invalidf("op %d: %v", i, err))
			}
			if err := k.s.limits.checkValue(o.Put.GetValue()); err != nil {
				return nil, toStatus(invalidf("op %d: %v", i, err))
			}
			cmd.Ops[i] = &raftv1.BatchCommandOp{Key: o.Put.GetKey(), Value: o.Put.GetValue()}
		case *kvdbv1.BatchOp_Delete:
			if err := k.s.limits.checkKey(o.Delete.GetKey()); err != nil {
				return nil, toStatus(invalidf("op %d: %v", i, err))
			}
			cmd.Ops[i] = &raftv1.BatchCommandOp{Delete: true, Key: o.Delete.GetKey()}
		default:
			return nil, toStatus(invalidf("op %d: neither put nor delete", i))
		}
	}
	res, err := k.s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_Batch{Batch: cmd}}, batchGrowth(cmd))
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &kvdbv1.BatchResponse{Header: k.s.header(res.Revision)}
	for i, r := range res.Ops {
		if cmd.Ops[i].GetDelete() {
			resp.Deleted += r.Deleted
		} else {
			resp.Puts++
		}
	}
	return resp, nil
}

// rangeBounds validates a range request's key, range_end and prefix and
// returns the [key, end) the engine reads (end empty: just key).
func (s *Server) rangeBounds(key, end []byte, prefix bool) ([]byte, []byte, error) {
	if prefix {
		if len(key) == 0 {
			end = []byte{0}
		} else {
			end = engine.PrefixEnd(key)
		}
	}
	// An empty key with range_end "\x00" is a scan of every key.
	if len(key) == 0 && !(len(end) == 1 && end[0] == 0) {
		return nil, nil, invalidf("key must not be empty (use prefix with an empty key, or range_end \"\\x00\", to scan everything)")
	}
	if len(key) > s.limits.MaxKeySize {
		return nil, nil, invalidf("key is %d bytes, over the max-key-size limit of %d bytes", len(key), s.limits.MaxKeySize)
	}
	if err := s.limits.checkRangeEnd(key, end); err != nil {
		return nil, nil, err
	}
	return key, end, nil
}

// rangeLimit turns a request's limit into the number of keys to return.
func (s *Server) rangeLimit(limit int64) (int, error) {
	if limit < 0 {
		return 0, invalidf("limit must not be negative")
	}
	if limit == 0 || limit > int64(s.limits.MaxRangeLimit) {
		return s.limits.MaxRangeLimit, nil
	}
	return int(limit), nil
}

func toProtoKV(kv engine.KeyValue, keysOnly bool) *kvdbv1.KeyValue {
	p := &kvdbv1.KeyValue{
		Key:            kv.Key,
		CreateRevision: kv.CreateRevision,
		ModRevision:    kv.ModRevision,
		Version:        kv.Version,
	}
	if !keysOnly {
		p.Value = kv.Value
	}
	return p
}

// batchGrowth is the most a batch can add to MemoryUsage: its puts.
func batchGrowth(cmd *raftv1.BatchCommand) (n int64) {
	for _, o := range cmd.GetOps() {
		if !o.GetDelete() {
			n += entryGrowth(o.GetKey(), o.GetValue())
		}
	}
	return n
}
