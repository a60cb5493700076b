package service

import (
	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	"github.com/kvdb/kvdb/internal/engine"
)

// applyTxn decodes and applies a TxnCommand. A conflict is not an error of
// the entry: it is reported to the proposer as ErrTxnConflict, identically
// on every replica.
func (f *fsm) applyTxn(index uint64, c *raftv1.TxnCommand) any {
	t := decodeTxn(c)
	res, _, err := f.store.ApplyTxn(index, t)
	if err != nil {
		return applyResult{err: invalidf("%v", err)}
	}
	return applyResult{res: res.Result, txn: &res}
}

// decodeTxn converts the log form to the engine's. Unknown enum values map
// to zero values, which engine.ValidateTxn rejects, so a malformed entry is
// refused whole on every replica rather than half applied.
func decodeTxn(c *raftv1.TxnCommand) *engine.Txn {
	t := &engine.Txn{
		Reads:    make([]engine.ReadCheck, len(c.GetReads())),
		Ranges:   make([]engine.RangeCheck, len(c.GetRanges())),
		Compares: make([]engine.Compare, len(c.GetCompares())),
		Success:  decodeTxnOps(c.GetSuccess()),
		Failure:  decodeTxnOps(c.GetFailure()),
	}
	for i, r := range c.GetReads() {
		t.Reads[i] = engine.ReadCheck{Key: r.GetKey(), ModRevision: r.GetModRevision()}
	}
	for i, r := range c.GetRanges() {
		t.Ranges[i] = engine.RangeCheck{Key: r.GetKey(), End: r.GetRangeEnd(), Count: r.GetCount(), MaxModRevision: r.GetMaxModRevision()}
	}
	for i, cmp := range c.GetCompares() {
		t.Compares[i] = engine.Compare{
			Key:    cmp.GetKey(),
			Target: compareTargets[cmp.GetTarget()],
			Op:     compareOps[cmp.GetOperator()],
			Value:  cmp.GetValue(),
			Number: cmp.GetNumber(),
		}
	}
	return t
}

var (
	compareTargets = map[raftv1.TxnCompareTarget]engine.CompareTarget{
		raftv1.TxnCompareTarget_TXN_COMPARE_TARGET_VALUE:   engine.CompareValue,
		raftv1.TxnCompareTarget_TXN_COMPARE_TARGET_VERSION: engine.CompareVersion,
		raftv1.TxnCompareTarget_TXN_COMPARE_TARGET_CREATE:  engine.CompareCreate,
		raftv1.TxnCompareTarget_TXN_COMPARE_TARGET_MOD:     engine.CompareMod,
	}
	compareOps = map[raftv1.TxnCompareOperator]engine.CompareOp{
		raftv1.TxnCompareOperator_TXN_COMPARE_OPERATOR_EQUAL:     engine.CompareEqual,
		raftv1.TxnCompareOperator_TXN_COMPARE_OPERATOR_NOT_EQUAL: engine.CompareNotEqual,
		raftv1.TxnCompareOperator_TXN_COMPARE_OPERATOR_GREATER:   engine.CompareGreater,
		raftv1.TxnCompareOperator_TXN_COMPARE_OPERATOR_LESS:      engine.CompareLess,
	}
)

func decodeTxnOps(ops []*raftv1.TxnOp) []engine.Op {
	out := make([]engine.Op, len(ops))
	for i, o := range ops {
		op := engine.Op{Key: o.GetKey(), End: o.GetRangeEnd(), Value: o.GetValue(), PrevKV: o.GetPrevKv()}
		switch o.GetType() {
		case raftv1.TxnOpType_TXN_OP_TYPE_PUT:
			op.Type, op.End = engine.OpPut, nil
		case raftv1.TxnOpType_TXN_OP_TYPE_DELETE:
			op.Type = engine.OpDelete
			if len(op.End) > 0 {
				op.Type = engine.OpDeleteRange
			}
		case raftv1.TxnOpType_TXN_OP_TYPE_RANGE:
			op.Type = engine.OpRange
			op.Range = engine.RangeOptions{Limit: int(max(o.GetLimit(), 0)), KeysOnly: o.GetKeysOnly(), CountOnly: o.GetCountOnly()}
		}
		out[i] = op
	}
	return out
}
