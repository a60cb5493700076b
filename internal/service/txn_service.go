package service

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/core"
	"github.com/kvdb/kvdb/internal/engine"
)

// txnService implements kvdbv1.TxnServiceServer by translating to core's
// transactions.
type txnService struct {
	kvdbv1.UnimplementedTxnServiceServer
	s *Server
}

func (x *txnService) Begin(ctx context.Context, req *kvdbv1.BeginRequest) (*kvdbv1.BeginResponse, error) {
	r, err := x.s.core.Begin(ctx, req.GetTxnId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.BeginResponse{Header: x.s.header(r.StartRevision), TxnId: r.ID, StartRevision: r.StartRevision}, nil
}

func (x *txnService) Get(ctx context.Context, req *kvdbv1.TxnServiceGetRequest) (*kvdbv1.TxnServiceGetResponse, error) {
	kv, rev, err := x.s.core.TxnGet(ctx, req.GetTxnId(), req.GetKey())
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.TxnServiceGetResponse{Header: x.s.header(rev), Kv: toProtoKV(kv, false)}, nil
}

func (x *txnService) Range(ctx context.Context, req *kvdbv1.TxnServiceRangeRequest) (*kvdbv1.TxnServiceRangeResponse, error) {
	r, err := x.s.core.TxnRange(ctx, req.GetTxnId(), core.RangeRequest{Key: req.GetKey(), End: req.GetRangeEnd(),
		Prefix: req.GetPrefix(), Limit: req.GetLimit()})
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.TxnServiceRangeResponse{Header: x.s.header(r.Revision), More: r.More, Kvs: toProtoKVs(r.KVs, false)}, nil
}

func (x *txnService) Put(ctx context.Context, req *kvdbv1.TxnServicePutRequest) (*kvdbv1.TxnServicePutResponse, error) {
	if err := x.s.core.TxnPut(ctx, req.GetTxnId(), req.GetKey(), req.GetValue()); err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.TxnServicePutResponse{Header: x.s.header(x.s.store.Revision())}, nil
}

func (x *txnService) Delete(ctx context.Context, req *kvdbv1.TxnServiceDeleteRequest) (*kvdbv1.TxnServiceDeleteResponse, error) {
	if err := x.s.core.TxnDelete(ctx, req.GetTxnId(), req.GetKey()); err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.TxnServiceDeleteResponse{Header: x.s.header(x.s.store.Revision())}, nil
}

func (x *txnService) Commit(ctx context.Context, req *kvdbv1.CommitRequest) (*kvdbv1.CommitResponse, error) {
	r, err := x.s.core.Commit(ctx, req.GetTxnId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.CommitResponse{Header: x.s.header(r.Revision), Puts: r.Puts, Deleted: r.Deleted}, nil
}

func (x *txnService) Rollback(ctx context.Context, req *kvdbv1.RollbackRequest) (*kvdbv1.RollbackResponse, error) {
	if err := x.s.core.Rollback(ctx, req.GetTxnId()); err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.RollbackResponse{Header: x.s.header(x.s.store.Revision())}, nil
}

// Execute is the one-shot conditional transaction.
func (x *txnService) Execute(ctx context.Context, req *kvdbv1.ExecuteRequest) (*kvdbv1.ExecuteResponse, error) {
	in := core.ExecuteRequest{Compares: make([]core.Compare, len(req.GetCompares()))}
	for i, c := range req.GetCompares() {
		cmp := core.Compare{Key: c.GetKey(), Op: compareOps[c.GetOperator()]}
		switch o := c.GetOperand().(type) {
		case *kvdbv1.Compare_Value:
			cmp.Target, cmp.Value = engine.CompareValue, o.Value
		case *kvdbv1.Compare_Version:
			cmp.Target, cmp.Number = engine.CompareVersion, o.Version
		case *kvdbv1.Compare_CreateRevision:
			cmp.Target, cmp.Number = engine.CompareCreate, o.CreateRevision
		case *kvdbv1.Compare_ModRevision:
			cmp.Target, cmp.Number = engine.CompareMod, o.ModRevision
		}
		in.Compares[i] = cmp
	}
	var err error
	if in.Success, err = x.executeOps("success", req.GetSuccess()); err != nil {
		return nil, toStatus(err)
	}
	if in.Failure, err = x.executeOps("failure", req.GetFailure()); err != nil {
		return nil, toStatus(err)
	}
	r, err := x.s.core.Execute(ctx, in)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &kvdbv1.ExecuteResponse{Header: x.s.header(r.Revision), Succeeded: r.Succeeded,
		Responses: make([]*kvdbv1.ExecuteOpResponse, len(r.Responses))}
	ops := req.GetSuccess()
	if !r.Succeeded {
		ops = req.GetFailure()
	}
	for i, o := range r.Responses {
		switch o.Type {
		case core.TxnRange:
			rr := &kvdbv1.RangeResponse{More: o.More, Count: o.Count, Kvs: toProtoKVs(o.KVs, ops[i].GetRange().GetKeysOnly())}
			resp.Responses[i] = &kvdbv1.ExecuteOpResponse{Response: &kvdbv1.ExecuteOpResponse_Range{Range: rr}}
		case core.TxnPut:
			pr := &kvdbv1.PutResponse{}
			if len(o.Prev) > 0 {
				pr.PrevKv = toProtoKV(o.Prev[0], false)
			}
			resp.Responses[i] = &kvdbv1.ExecuteOpResponse{Response: &kvdbv1.ExecuteOpResponse_Put{Put: pr}}
		default:
			dr := &kvdbv1.DeleteResponse{Deleted: o.Deleted, PrevKvs: toProtoKVs(o.Prev, false)}
			resp.Responses[i] = &kvdbv1.ExecuteOpResponse{Response: &kvdbv1.ExecuteOpResponse_Delete{Delete: dr}}
		}
	}
	return resp, nil
}

var compareOps = map[kvdbv1.CompareOperator]engine.CompareOp{
	kvdbv1.CompareOperator_COMPARE_OPERATOR_EQUAL:     engine.CompareEqual,
	kvdbv1.CompareOperator_COMPARE_OPERATOR_NOT_EQUAL: engine.CompareNotEqual,
	kvdbv1.CompareOperator_COMPARE_OPERATOR_GREATER:   engine.CompareGreater,
	kvdbv1.CompareOperator_COMPARE_OPERATOR_LESS:      engine.CompareLess,
}

// executeOps translates one branch; an op with none of range, put or
// delete set becomes a zero TxnOp, which core rejects by position. A put's
// ttl_ms is checked as Put checks it.
func (x *txnService) executeOps(branch string, ops []*kvdbv1.ExecuteOp) ([]core.TxnOp, error) {
	out := make([]core.TxnOp, len(ops))
	maxTTL := x.s.core.Limits().MaxTTL
	for i, op := range ops {
		switch o := op.GetOp().(type) {
		case *kvdbv1.ExecuteOp_Range:
			r := o.Range
			out[i] = core.TxnOp{Type: core.TxnRange, Key: r.GetKey(), End: r.GetRangeEnd(), Prefix: r.GetPrefix(),
				Limit: r.GetLimit(), KeysOnly: r.GetKeysOnly(), CountOnly: r.GetCountOnly()}
		case *kvdbv1.ExecuteOp_Put:
			p := o.Put
			if ms := p.GetTtlMs(); ms < 0 || ms > int64(maxTTL/time.Millisecond) {
				return nil, core.Errorf(core.InvalidArgument, "%s op %d: ttl_ms %d is outside 0 to the max-ttl limit of %s", branch, i, ms, maxTTL)
			}
			out[i] = core.TxnOp{Type: core.TxnPut, Key: p.GetKey(), Value: p.GetValue(), PrevKV: p.GetPrevKv(),
				TTL: time.Duration(p.GetTtlMs()) * time.Millisecond, Lease: p.GetLease()}
		case *kvdbv1.ExecuteOp_Delete:
			d := o.Delete
			out[i] = core.TxnOp{Type: core.TxnDelete, Key: d.GetKey(), End: d.GetRangeEnd(), Prefix: d.GetPrefix(), PrevKV: d.GetPrevKv()}
		}
	}
	if err := duplicateKeys(branch, out); err != nil {
		return nil, err
	}
	return out, nil
}

// duplicateKeys refuses a branch that writes one key twice, as etcd does:
// two puts of a key, or a put of a key a delete of the branch also removes
// (deletes may overlap each other). Applied in order they would give one
// key two changes at one revision. The puts are sorted once, so each
// delete looks up the first put at or after its start: O(n log n) in the
// branch's operations (up to max-txn-ops).
func duplicateKeys(branch string, ops []core.TxnOp) error {
	type put struct {
		key string
		i   int
	}
	var puts []put
	for i, op := range ops {
		if op.Type == core.TxnPut {
			puts = append(puts, put{string(op.Key), i})
		}
	}
	slices.SortFunc(puts, func(a, b put) int { return cmp.Or(strings.Compare(a.key, b.key), a.i-b.i) })
	for n := 1; n < len(puts); n++ {
		if puts[n].key == puts[n-1].key {
			return core.Errorf(core.InvalidArgument, "%s ops %d and %d: duplicate key %q given in a transaction", branch, puts[n-1].i, puts[n].i, puts[n].key)
		}
	}
	for i, op := range ops {
		if op.Type != core.TxnDelete {
			continue
		}
		end := op.End
		if op.Prefix {
			end = engine.PrefixEnd(op.Key)
		}
		j, _ := slices.BinarySearchFunc(puts, string(op.Key), func(p put, k string) int { return strings.Compare(p.key, k) })
		if j == len(puts) {
			continue
		}
		p := puts[j] // the first put at or after the delete's key
		in := p.key == string(op.Key)
		if len(end) > 0 {
			in = string(end) == "\x00" || p.key < string(end)
		}
		if in {
			return core.Errorf(core.InvalidArgument, "%s ops %d and %d: key %q is both put and deleted in a transaction", branch, min(i, p.i), max(i, p.i), p.key)
		}
	}
	return nil
}
