package service

import (
	"context"
	"time"

	"github.com/kvdb/kvdb/internal/core"
	"github.com/kvdb/kvdb/internal/engine"
	"github.com/kvdb/kvdb/internal/wire"
)

// Transactions on the binary protocol are connection-scoped: BEGIN opens
// the connection's transaction, GET/PUT/DELETE/RANGE with IN_TXN run in it,
// COMMIT or ROLLBACK ends it, and closing the connection rolls it back. TXN
// is the one-shot conditional transaction. Both are core's transactions, so
// the semantics (OCC validation at commit, ABORTED naming the conflicting
// key, idle expiry, limits) are those of TxnService.
//
// These requests run on the read loop, one at a time, after the
// connection's earlier writes have been applied: a transaction sees the
// connection's own earlier writes, and its requests keep their order.

// serveTxn answers one transactional request.
func (c *binaryConn) serveTxn(req *wire.Request) {
	start := time.Now()
	c.dispatchReads()
	c.writes.Wait()
	ctx, cancel := context.WithTimeout(c.ctx, c.s.core.RequestTimeout())
	defer cancel()
	r, err := c.txnRequest(ctx, req)
	if err != nil {
		c.send(errorReply(req.Op, req.ID, err))
	} else {
		r.Op, r.ID = req.Op, req.ID
		c.send(func(b []byte) []byte { return wire.AppendResponse(b, r) })
	}
	c.finish(core.Binary, coreOp(req), start)
}

func (c *binaryConn) txnRequest(ctx context.Context, req *wire.Request) (*wire.Response, error) {
	x := c.s.core
	switch req.Op {
	case wire.OpTxn:
		er, err := executeRequest(req)
		if err != nil {
			return nil, err
		}
		res, err := x.Execute(ctx, er)
		if err != nil {
			return nil, err
		}
		return &wire.Response{Revision: res.Revision, Succeeded: res.Succeeded}, nil
	case wire.OpBegin:
		if c.txnID != "" {
			return nil, core.Errorf(core.FailedPrecondition, "a transaction is already open on this connection: COMMIT or ROLLBACK it first")
		}
		res, err := x.Begin(ctx, "")
		if err != nil {
			return nil, err
		}
		c.txnID = res.ID
		c.txnSeq++
		return &wire.Response{TxnID: c.txnSeq, Revision: res.StartRevision}, nil
	}
	if err := x.CheckAuthenticated(ctx); err != nil {
		return nil, err
	}
	if c.txnID == "" {
		return nil, core.Errorf(core.FailedPrecondition, "%s needs an open transaction: send BEGIN first", req.Op)
	}
	txn := c.txnID
	switch req.Op {
	case wire.OpCommit:
		c.txnID = ""
		res, err := x.Commit(ctx, txn)
		if err != nil {
			return nil, err
		}
		return &wire.Response{Revision: res.Revision}, nil
	case wire.OpRollback:
		c.txnID = ""
		if err := x.Rollback(ctx, txn); err != nil {
			return nil, err
		}
		return &wire.Response{}, nil
	case wire.OpGet:
		kv, rev, err := x.TxnGet(ctx, txn, req.Key)
		if err != nil {
			return nil, err
		}
		return &wire.Response{Revision: rev, KV: wireKV(kv, false)}, nil
	case wire.OpPut:
		return &wire.Response{}, x.TxnPut(ctx, txn, req.Key, req.Value)
	case wire.OpDelete:
		if len(req.End) > 0 || req.Flags&wire.FlagPrefix != 0 {
			return nil, core.Errorf(core.InvalidArgument, "a DELETE inside a transaction removes one key: range and prefix deletes are not supported there")
		}
		return &wire.Response{}, x.TxnDelete(ctx, txn, req.Key)
	case wire.OpRange:
		res, err := x.TxnRange(ctx, txn, core.RangeRequest{Key: req.Key, End: req.End, Prefix: req.Flags&wire.FlagPrefix != 0,
			Limit: req.Limit, KeysOnly: req.Flags&wire.FlagKeysOnly != 0, CountOnly: req.Flags&wire.FlagCountOnly != 0})
		if err != nil {
			return nil, err
		}
		return &wire.Response{Revision: res.Revision, More: res.More, Count: res.Count, KVs: wireKVs(res.KVs, false)}, nil
	}
	return nil, core.Errorf(core.Unimplemented, "%s cannot run inside a transaction", req.Op)
}

// rollbackOpen discards the connection's open transaction when it closes.
func (c *binaryConn) rollbackOpen() {
	if c.txnID == "" {
		return
	}
	_ = c.s.core.Rollback(c.ctx, c.txnID)
	c.txnID = ""
}

var (
	wireCompareOps = map[wire.CompareResult]engine.CompareOp{
		wire.CompareEqual: engine.CompareEqual, wire.CompareNotEqual: engine.CompareNotEqual,
		wire.CompareLess: engine.CompareLess, wire.CompareGreater: engine.CompareGreater,
	}
	wireCompareTargets = map[wire.CompareTarget]engine.CompareTarget{
		wire.TargetVersion: engine.CompareVersion, wire.TargetCreate: engine.CompareCreate,
		wire.TargetMod: engine.CompareMod, wire.TargetValue: engine.CompareValue,
	}
)

// executeRequest translates a TXN frame into core's one-shot transaction.
// Unknown compare bytes become zero values, which core rejects. The bytes
// alias the reader's buffer; Execute encodes them before it returns.
func executeRequest(req *wire.Request) (core.ExecuteRequest, error) {
	out := core.ExecuteRequest{Compares: make([]core.Compare, len(req.Compares))}
	for i, c := range req.Compares {
		out.Compares[i] = core.Compare{Key: c.Key, Op: wireCompareOps[c.Result], Target: wireCompareTargets[c.Target],
			Value: c.Value, Number: c.Operand}
	}
	branch := func(ops []wire.BatchOp) []core.TxnOp {
		res := make([]core.TxnOp, len(ops))
		for i, o := range ops {
			res[i] = core.TxnOp{Type: core.TxnPut, Key: o.Key, Value: o.Value}
			if o.Type == wire.BatchDelete {
				res[i] = core.TxnOp{Type: core.TxnDelete, Key: o.Key}
			}
		}
		return res
	}
	out.Success, out.Failure = branch(req.Ops), branch(req.Failure)
	// A branch writes each key once, as gRPC's Execute requires.
	if err := duplicateKeys("success", out.Success); err != nil {
		return out, err
	}
	if err := duplicateKeys("failure", out.Failure); err != nil {
		return out, err
	}
	return out, nil
}
