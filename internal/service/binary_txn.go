package service

import (
	"bytes"
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/wire"
)

// Transactions on the binary protocol are connection-scoped: BEGIN opens
// the connection's transaction, GET/PUT/DELETE/RANGE with IN_TXN run in it,
// COMMIT or ROLLBACK ends it, and closing the connection rolls it back. TXN
// is the one-shot conditional transaction. They are served by the same
// code as TxnService, so the semantics (OCC validation at commit, ABORTED
// naming the conflicting key, idle expiry, limits) are identical.
//
// These requests run on the read loop, one at a time, after the
// connection's earlier writes have been applied: a transaction sees the
// connection's own earlier writes, and its requests keep their order.

// serveTxn answers one transactional request.
func (c *binaryConn) serveTxn(req *wire.Request) {
	start := time.Now()
	c.dispatchReads()
	c.writes.Wait()
	ctx, cancel := c.requestContext()
	defer cancel()
	frame, err := c.txnRequest(ctx, req)
	if err != nil {
		c.send(errorReply(req.Op, req.ID, err))
	} else {
		c.send(frame)
	}
	c.s.ops.observe("binary", "TXN_"+opName(req.Op), time.Since(start))
}

func (c *binaryConn) txnRequest(ctx context.Context, req *wire.Request) (func([]byte) []byte, error) {
	// The request aliases the reader's buffer, and a transaction keeps its
	// buffered writes until Commit: give it bytes of its own.
	req = cloneRequest(req)
	x := &txnService{s: c.s}
	op, id := req.Op, req.ID
	reply := func(r *wire.Response) func([]byte) []byte {
		r.Op, r.ID = op, id
		return func(b []byte) []byte { return wire.AppendResponse(b, r) }
	}
	if op == wire.OpTxn {
		resp, err := x.Execute(ctx, executeRequest(req))
		if err != nil {
			return nil, err
		}
		return reply(&wire.Response{Revision: resp.GetHeader().GetRevision(), Succeeded: resp.GetSucceeded()}), nil
	}
	if op == wire.OpBegin {
		if c.txnID != "" {
			return nil, status.Error(codes.FailedPrecondition, "a transaction is already open on this connection: COMMIT or ROLLBACK it first")
		}
		resp, err := x.Begin(ctx, &kvdbv1.BeginRequest{})
		if err != nil {
			return nil, err
		}
		c.txnID = resp.GetTxnId()
		c.txnSeq++
		return reply(&wire.Response{TxnID: c.txnSeq, Revision: resp.GetStartRevision()}), nil
	}
	if c.txnID == "" {
		return nil, status.Errorf(codes.FailedPrecondition, "%s needs an open transaction: send BEGIN first", op)
	}
	txn := c.txnID
	switch op {
	case wire.OpCommit:
		c.txnID = ""
		resp, err := x.Commit(ctx, &kvdbv1.CommitRequest{TxnId: txn})
		if err != nil {
			return nil, err
		}
		return reply(&wire.Response{Revision: resp.GetHeader().GetRevision()}), nil
	case wire.OpRollback:
		c.txnID = ""
		if _, err := x.Rollback(ctx, &kvdbv1.RollbackRequest{TxnId: txn}); err != nil {
			return nil, err
		}
		return reply(&wire.Response{}), nil
	case wire.OpGet:
		resp, err := x.Get(ctx, &kvdbv1.TxnServiceGetRequest{TxnId: txn, Key: req.Key})
		if err != nil {
			return nil, err
		}
		return reply(&wire.Response{Revision: resp.GetHeader().GetRevision(), KV: fromProtoKV(resp.GetKv())}), nil
	case wire.OpPut:
		if _, err := x.Put(ctx, &kvdbv1.TxnServicePutRequest{TxnId: txn, Key: req.Key, Value: req.Value}); err != nil {
			return nil, err
		}
		return reply(&wire.Response{}), nil
	case wire.OpDelete:
		if len(req.End) > 0 || req.Flags&wire.FlagPrefix != 0 {
			return nil, invalidf("a DELETE inside a transaction removes one key: range and prefix deletes are not supported there")
		}
		if _, err := x.Delete(ctx, &kvdbv1.TxnServiceDeleteRequest{TxnId: txn, Key: req.Key}); err != nil {
			return nil, err
		}
		return reply(&wire.Response{}), nil
	case wire.OpRange:
		resp, err := x.Range(ctx, &kvdbv1.TxnServiceRangeRequest{TxnId: txn, Key: req.Key, RangeEnd: req.End,
			Prefix: req.Flags&wire.FlagPrefix != 0, Limit: req.Limit})
		if err != nil {
			return nil, err
		}
		r := &wire.Response{Revision: resp.GetHeader().GetRevision(), More: resp.GetMore(), Count: int64(len(resp.GetKvs()))}
		if req.Flags&wire.FlagCountOnly == 0 {
			for _, kv := range resp.GetKvs() {
				w := fromProtoKV(kv)
				if req.Flags&wire.FlagKeysOnly != 0 {
					w.Value = nil
				}
				r.KVs = append(r.KVs, w)
			}
		}
		return reply(r), nil
	}
	return nil, status.Errorf(codes.Unimplemented, "%s cannot run inside a transaction", op)
}

// rollbackOpen discards the connection's open transaction when it closes.
func (c *binaryConn) rollbackOpen() {
	if c.txnID == "" {
		return
	}
	ctx, cancel := c.requestContext()
	defer cancel()
	_, _ = (&txnService{s: c.s}).Rollback(ctx, &kvdbv1.RollbackRequest{TxnId: c.txnID})
	c.txnID = ""
}

func fromProtoKV(kv *kvdbv1.KeyValue) wire.KeyValue {
	return wire.KeyValue{Key: kv.GetKey(), Value: kv.GetValue(), CreateRevision: kv.GetCreateRevision(),
		ModRevision: kv.GetModRevision(), Version: kv.GetVersion()}
}

// executeRequest translates a TXN frame into TxnService.Execute's request.
func executeRequest(req *wire.Request) *kvdbv1.ExecuteRequest {
	out := &kvdbv1.ExecuteRequest{}
	for _, c := range req.Compares {
		pc := &kvdbv1.Compare{Key: c.Key}
		switch c.Result {
		case wire.CompareEqual:
			pc.Operator = kvdbv1.CompareOperator_COMPARE_OPERATOR_EQUAL
		case wire.CompareNotEqual:
			pc.Operator = kvdbv1.CompareOperator_COMPARE_OPERATOR_NOT_EQUAL
		case wire.CompareLess:
			pc.Operator = kvdbv1.CompareOperator_COMPARE_OPERATOR_LESS
		case wire.CompareGreater:
			pc.Operator = kvdbv1.CompareOperator_COMPARE_OPERATOR_GREATER
		}
		switch c.Target {
		case wire.TargetVersion:
			pc.Operand = &kvdbv1.Compare_Version{Version: c.Operand}
		case wire.TargetCreate:
			pc.Operand = &kvdbv1.Compare_CreateRevision{CreateRevision: c.Operand}
		case wire.TargetMod:
			pc.Operand = &kvdbv1.Compare_ModRevision{ModRevision: c.Operand}
		case wire.TargetValue:
			pc.Operand = &kvdbv1.Compare_Value{Value: c.Value}
		}
		out.Compares = append(out.Compares, pc)
	}
	branch := func(ops []wire.BatchOp) []*kvdbv1.ExecuteOp {
		var res []*kvdbv1.ExecuteOp
		for _, o := range ops {
			if o.Type == wire.BatchDelete {
				res = append(res, &kvdbv1.ExecuteOp{Op: &kvdbv1.ExecuteOp_Delete{Delete: &kvdbv1.DeleteRequest{Key: o.Key}}})
			} else {
				res = append(res, &kvdbv1.ExecuteOp{Op: &kvdbv1.ExecuteOp_Put{Put: &kvdbv1.PutRequest{Key: o.Key, Value: o.Value}}})
			}
		}
		return res
	}
	out.Success, out.Failure = branch(req.Ops), branch(req.Failure)
	return out
}

// cloneRequest copies every byte slice of req out of the reader's buffer.
func cloneRequest(req *wire.Request) *wire.Request {
	r := *req
	r.Key, r.End, r.Value, r.Payload = bytes.Clone(req.Key), bytes.Clone(req.End), bytes.Clone(req.Value), nil
	cloneOps := func(ops []wire.BatchOp) []wire.BatchOp {
		out := make([]wire.BatchOp, len(ops))
		for i, o := range ops {
			out[i] = wire.BatchOp{Type: o.Type, Key: bytes.Clone(o.Key), Value: bytes.Clone(o.Value)}
		}
		return out
	}
	r.Ops, r.Failure = cloneOps(req.Ops), cloneOps(req.Failure)
	r.Compares = make([]wire.Compare, len(req.Compares))
	for i, c := range req.Compares {
		c.Key, c.Value = bytes.Clone(c.Key), bytes.Clone(c.Value)
		r.Compares[i] = c
	}
	return &r
}
