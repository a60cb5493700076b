package core

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kvdb/kvdb/internal/auth"
	"github.com/kvdb/kvdb/internal/engine"
)

// Compare is one condition of a one-shot transaction: Key's Target
// compared with Value (CompareValue) or Number (the revision targets).
type Compare = engine.Compare

// TxnOpType says what a one-shot transaction's operation does.
type TxnOpType uint8

// The operation types of a one-shot transaction.
const (
	TxnRange TxnOpType = iota + 1
	TxnPut
	TxnDelete
)

// TxnOp is one operation of a one-shot transaction's branch. A range uses
// Key, End, Prefix, Limit, KeysOnly and CountOnly; a put Key, Value and
// PrevKV; a delete Key, End, Prefix and PrevKV.
type TxnOp struct {
	Type                TxnOpType
	Key, End, Value     []byte
	Prefix, PrevKV      bool
	Limit               int64
	KeysOnly, CountOnly bool
	// TTL makes a put's key expire that long after the transaction is
	// prepared (0: never); At instead gives the deadline itself, in unix
	// milliseconds (Redis's EXAT and PXAT).
	TTL time.Duration
	At  int64
	// Lease attaches a put's key to that lease (0: none), as PutOptions
	// does; not together with TTL or At. A lease missing when the
	// transaction applies fails it whole.
	Lease int64
}

// ExecuteRequest is a one-shot conditional transaction: when every compare
// holds, Success runs, else Failure, atomically at one revision.
type ExecuteRequest struct {
	Compares         []Compare
	Success, Failure []TxnOp
}

// TxnOpResult is the answer of one operation of the branch that ran: a
// range fills KVs, Count and More; a put Prev (at most one); a delete
// Deleted and Prev.
type TxnOpResult struct {
	Type    TxnOpType
	KVs     []KeyValue
	Count   int64
	More    bool
	Prev    []KeyValue
	Deleted int64
}

// ExecuteResult says which branch ran and what each of its operations did.
type ExecuteResult struct {
	Revision  int64
	Succeeded bool
	Responses []TxnOpResult
}

// Execute validates, proposes and answers a one-shot transaction.
func (c *Core) Execute(ctx context.Context, req ExecuteRequest) (ExecuteResult, error) {
	authRev := c.authRevision()
	if _, err := c.authenticated(ctx); err != nil {
		return ExecuteResult{}, err
	}
	n := len(req.Compares) + len(req.Success) + len(req.Failure)
	if n > c.limits.MaxTxnOps {
		return ExecuteResult{}, invalidf("transaction has %d compares and operations, over the max-txn-ops limit of %d", n, c.limits.MaxTxnOps)
	}
	// The compares see keys past their deadline as absent, as reads do:
	// the clock is this node's, logged with the transaction so every
	// replica decides alike.
	t := &engine.Txn{Compares: make([]engine.Compare, len(req.Compares)), Now: nowMillis()}
	for i, cmp := range req.Compares {
		if err := c.checkCompare(cmp); err != nil {
			return ExecuteResult{}, invalidf("compare %d: %v", i, err)
		}
		if err := c.authorize(ctx, auth.Read, cmp.Key, nil); err != nil {
			return ExecuteResult{}, fmt.Errorf("compare %d: %w", i, err)
		}
		t.Compares[i] = cmp
	}
	var err error
	if t.Success, err = c.txnOps(ctx, "success", req.Success); err != nil {
		return ExecuteResult{}, err
	}
	if t.Failure, err = c.txnOps(ctx, "failure", req.Failure); err != nil {
		return ExecuteResult{}, err
	}
	r, err := c.proposeTxn(ctx, t, authRev)
	if errors.Is(err, engine.ErrLeaseNotFound) {
		return ExecuteResult{}, Errorf(NotFound, "the branch that ran, %v", err)
	}
	if err != nil {
		return ExecuteResult{}, err
	}
	c.txns.commits.Add(1)
	out := ExecuteResult{Revision: r.Res.Revision, Succeeded: r.Txn.Succeeded}
	ops := req.Success
	if !out.Succeeded {
		ops = req.Failure
	}
	out.Responses = make([]TxnOpResult, len(r.Res.Ops))
	budget := c.limits.MaxResponseBytes // shared by every range of the branch
	now := time.Now()
	for i, o := range r.Res.Ops {
		res := TxnOpResult{Type: ops[i].Type}
		switch ops[i].Type {
		case TxnRange:
			// The range was read when the entry applied, where no clock is
			// read; what it returns hides keys past their deadline.
			o.KVs, o.Count = c.visible(o.KVs, o.Count, now)
			res.Count, res.More = o.Count, o.More
			if budget <= 0 && len(o.KVs) > 0 {
				res.More = true // the budget went to earlier ranges
			} else {
				var cut bool
				res.KVs, cut = fitResponse(o.KVs, ops[i].KeysOnly, &budget)
				res.More = res.More || cut
			}
		case TxnPut:
			if prev, _ := c.visible(o.Prev, 0, now); len(prev) > 0 {
				res.Prev = prev[:1]
			}
		default:
			res.Deleted, res.Prev = o.Deleted, o.Prev
		}
		out.Responses[i] = res
	}
	return out, nil
}

func (c *Core) checkCompare(cmp Compare) error {
	if err := c.limits.checkKey(cmp.Key); err != nil {
		return err
	}
	switch cmp.Op {
	case engine.CompareEqual, engine.CompareNotEqual, engine.CompareGreater, engine.CompareLess:
	default:
		return invalidf("operator must be EQUAL, NOT_EQUAL, GREATER or LESS")
	}
	switch cmp.Target {
	case engine.CompareValue, engine.CompareVersion, engine.CompareCreate, engine.CompareMod:
	default:
		return invalidf("no operand: set value, version, create_revision or mod_revision")
	}
	return nil
}

// txnOps validates one branch of Execute and converts it.
func (c *Core) txnOps(ctx context.Context, branch string, ops []TxnOp) ([]engine.Op, error) {
	out := make([]engine.Op, len(ops))
	for i, o := range ops {
		var err error
		switch o.Type {
		case TxnRange:
			r := RangeRequest{Key: o.Key, End: o.End, Prefix: o.Prefix, Limit: o.Limit}
			if err = c.CheckRange(ctx, &r); err != nil {
				break
			}
			if len(r.Key) == 0 {
				r.Key = []byte{0} // whole keyspace: "\x00" is the smallest key
			}
			out[i] = engine.Op{Type: engine.OpRange, Key: r.Key, End: r.End,
				Range: engine.RangeOptions{Limit: int(r.Limit), KeysOnly: o.KeysOnly, CountOnly: o.CountOnly}}
		case TxnPut:
			if err = c.limits.checkKey(o.Key); err == nil {
				err = c.limits.checkValue(o.Value)
			}
			if err == nil {
				err = c.authorizeWrite(ctx, o.Key, nil, o.PrevKV)
			}
			var deadline int64
			if err == nil {
				deadline, err = c.deadline(o.TTL, o.At)
			}
			switch {
			case err != nil:
			case o.Lease < 0:
				err = invalidf("lease id must not be negative")
			case o.Lease != 0 && deadline != 0:
				err = invalidf("a put takes a ttl or a lease, not both")
			}
			out[i] = engine.Op{Type: engine.OpPut, Key: o.Key, Value: o.Value, PrevKV: o.PrevKV, Deadline: deadline, Lease: o.Lease}
		case TxnDelete:
			end := o.End
			if o.Prefix {
				end = engine.PrefixEnd(o.Key)
			}
			if err = c.limits.checkKey(o.Key); err == nil {
				err = c.limits.checkRangeEnd(o.Key, end)
			}
			if err == nil {
				err = c.authorizeWrite(ctx, o.Key, end, o.PrevKV)
			}
			out[i] = engine.Op{Type: engine.OpDelete, Key: o.Key, PrevKV: o.PrevKV}
			if len(end) > 0 {
				out[i].Type, out[i].End = engine.OpDeleteRange, end
			}
		default:
			err = invalidf("neither range, put nor delete")
		}
		if errors.Is(err, ErrPermissionDenied) || errors.Is(err, ErrUnauthenticated) {
			return nil, fmt.Errorf("%s op %d: %w", branch, i, err)
		}
		if err != nil {
			return nil, invalidf("%s op %d: %v", branch, i, err)
		}
	}
	return out, nil
}
