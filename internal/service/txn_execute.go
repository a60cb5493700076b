package service

import (
	"context"
	"fmt"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/engine"
)

// Execute is the one-shot conditional transaction: validate, encode one
// TxnCommand, propose it, and translate the branch that ran.
func (x *txnService) Execute(ctx context.Context, req *kvdbv1.ExecuteRequest) (*kvdbv1.ExecuteResponse, error) {
	n := len(req.GetCompares()) + len(req.GetSuccess()) + len(req.GetFailure())
	if n > x.s.limits.MaxTxnOps {
		return nil, toStatus(invalidf("transaction has %d compares and operations, over the max-txn-ops limit of %d", n, x.s.limits.MaxTxnOps))
	}
	cmd := &raftv1.TxnCommand{Compares: make([]*raftv1.TxnCompare, len(req.GetCompares()))}
	for i, c := range req.GetCompares() {
		tc, err := x.s.compareCommand(c)
		if err != nil {
			return nil, toStatus(invalidf("compare %d: %v", i, err))
		}
		cmd.Compares[i] = tc
	}
	var err error
	if cmd.Success, err = x.s.opCommands("success", req.GetSuccess()); err != nil {
		return nil, toStatus(err)
	}
	if cmd.Failure, err = x.s.opCommands("failure", req.GetFailure()); err != nil {
		return nil, toStatus(err)
	}
	r, err := x.s.proposeApply(ctx, &raftv1.Command{Op: &raftv1.Command_Txn{Txn: cmd}})
	if err != nil {
		return nil, toStatus(err)
	}
	x.s.txns.commits.Add(1)
	resp := &kvdbv1.ExecuteResponse{Header: x.s.header(r.res.Revision), Succeeded: r.txn.Succeeded}
	ops, reqOps := cmd.GetSuccess(), req.GetSuccess()
	if !r.txn.Succeeded {
		ops, reqOps = cmd.GetFailure(), req.GetFailure()
	}
	resp.Responses = make([]*kvdbv1.ExecuteOpResponse, len(r.res.Ops))
	for i, o := range r.res.Ops {
		switch ops[i].GetType() {
		case raftv1.TxnOpType_TXN_OP_TYPE_RANGE:
			rr := &kvdbv1.RangeResponse{More: o.More, Count: o.Count}
			keysOnly := reqOps[i].GetRange().GetKeysOnly()
			for _, kv := range o.KVs {
				rr.Kvs = append(rr.Kvs, toProtoKV(kv, keysOnly))
			}
			resp.Responses[i] = &kvdbv1.ExecuteOpResponse{Response: &kvdbv1.ExecuteOpResponse_Range{Range: rr}}
		case raftv1.TxnOpType_TXN_OP_TYPE_PUT:
			pr := &kvdbv1.PutResponse{}
			if len(o.Prev) > 0 {
				pr.PrevKv = toProtoKV(o.Prev[0], false)
			}
			resp.Responses[i] = &kvdbv1.ExecuteOpResponse{Response: &kvdbv1.ExecuteOpResponse_Put{Put: pr}}
		default:
			dr := &kvdbv1.DeleteResponse{Deleted: o.Deleted}
			for _, kv := range o.Prev {
				dr.PrevKvs = append(dr.PrevKvs, toProtoKV(kv, false))
			}
			resp.Responses[i] = &kvdbv1.ExecuteOpResponse{Response: &kvdbv1.ExecuteOpResponse_Delete{Delete: dr}}
		}
	}
	return resp, nil
}

var compareOperators = map[kvdbv1.CompareOperator]raftv1.TxnCompareOperator{
	kvdbv1.CompareOperator_COMPARE_OPERATOR_EQUAL:     raftv1.TxnCompareOperator_TXN_COMPARE_OPERATOR_EQUAL,
	kvdbv1.CompareOperator_COMPARE_OPERATOR_NOT_EQUAL: raftv1.TxnCompareOperator_TXN_COMPARE_OPERATOR_NOT_EQUAL,
	kvdbv1.CompareOperator_COMPARE_OPERATOR_GREATER:   raftv1.TxnCompareOperator_TXN_COMPARE_OPERATOR_GREATER,
	kvdbv1.CompareOperator_COMPARE_OPERATOR_LESS:      raftv1.TxnCompareOperator_TXN_COMPARE_OPERATOR_LESS,
}

func (s *Server) compareCommand(c *kvdbv1.Compare) (*raftv1.TxnCompare, error) {
	if err := s.limits.checkKey(c.GetKey()); err != nil {
		return nil, err
	}
	op, ok := compareOperators[c.GetOperator()]
	if !ok {
		return nil, fmt.Errorf("operator must be EQUAL, NOT_EQUAL, GREATER or LESS")
	}
	tc := &raftv1.TxnCompare{Key: c.GetKey(), Operator: op}
	switch o := c.GetOperand().(type) {
	case *kvdbv1.Compare_Value:
		tc.Target, tc.Value = raftv1.TxnCompareTarget_TXN_COMPARE_TARGET_VALUE, o.Value
	case *kvdbv1.Compare_Version:
		tc.Target, tc.Number = raftv1.TxnCompareTarget_TXN_COMPARE_TARGET_VERSION, o.Version
	case *kvdbv1.Compare_CreateRevision:
		tc.Target, tc.Number = raftv1.TxnCompareTarget_TXN_COMPARE_TARGET_CREATE, o.CreateRevision
	case *kvdbv1.Compare_ModRevision:
		tc.Target, tc.Number = raftv1.TxnCompareTarget_TXN_COMPARE_TARGET_MOD, o.ModRevision
	default:
		return nil, fmt.Errorf("no operand: set value, version, create_revision or mod_revision")
	}
	return tc, nil
}

// opCommands validates one branch of Execute and converts it.
func (s *Server) opCommands(branch string, ops []*kvdbv1.ExecuteOp) ([]*raftv1.TxnOp, error) {
	out := make([]*raftv1.TxnOp, len(ops))
	for i, op := range ops {
		var err error
		switch o := op.GetOp().(type) {
		case *kvdbv1.ExecuteOp_Range:
			r := o.Range
			var key, end []byte
			if key, end, err = s.rangeBounds(r.GetKey(), r.GetRangeEnd(), r.GetPrefix()); err != nil {
				break
			}
			var limit int
			if limit, err = s.rangeLimit(r.GetLimit()); err != nil {
				break
			}
			if len(key) == 0 {
				key = []byte{0} // whole keyspace: "\x00" is the smallest key
			}
			out[i] = &raftv1.TxnOp{Type: raftv1.TxnOpType_TXN_OP_TYPE_RANGE, Key: key, RangeEnd: end,
				Limit: int64(limit), KeysOnly: r.GetKeysOnly(), CountOnly: r.GetCountOnly()}
		case *kvdbv1.ExecuteOp_Put:
			p := o.Put
			if err = s.limits.checkKey(p.GetKey()); err == nil {
				err = s.limits.checkValue(p.GetValue())
			}
			out[i] = &raftv1.TxnOp{Type: raftv1.TxnOpType_TXN_OP_TYPE_PUT, Key: p.GetKey(), Value: p.GetValue(), PrevKv: p.GetPrevKv()}
		case *kvdbv1.ExecuteOp_Delete:
			d := o.Delete
			end := d.GetRangeEnd()
			if d.GetPrefix() {
				end = engine.PrefixEnd(d.GetKey())
			}
			if err = s.limits.checkKey(d.GetKey()); err == nil {
				err = s.limits.checkRangeEnd(d.GetKey(), end)
			}
			out[i] = &raftv1.TxnOp{Type: raftv1.TxnOpType_TXN_OP_TYPE_DELETE, Key: d.GetKey(), RangeEnd: end, PrevKv: d.GetPrevKv()}
		default:
			err = fmt.Errorf("neither range, put nor delete")
		}
		if err != nil {
			return nil, invalidf("%s op %d: %v", branch, i, err)
		}
	}
	return out, nil
}
