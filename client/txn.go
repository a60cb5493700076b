package client

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/wire"
)

// Txn is an interactive optimistic transaction. Reads record what they saw,
// writes are buffered on the server and reads see them, and Commit applies
// every write at one revision only if nothing read has changed since;
// otherwise it fails with an *Error of code ABORTED (errors.Is(err,
// ErrAborted)) and the whole transaction should be retried from Begin.
//
// A transaction lives on one server connection (the server keeps it), so
// its calls are not retried or moved. Not safe for concurrent use.
type Txn struct {
	c    *Client
	bin  *binaryConn // binary transport: the connection the txn belongs to
	g    *grpcConn   // gRPC transport
	id   string      // gRPC transaction id
	done bool
}

// ErrAborted matches the error of a Commit that found a conflict.
var ErrAborted = &Error{Code: codes.Aborted}

// Begin starts a transaction on the current endpoint.
func (c *Client) Begin(ctx context.Context) (*Txn, error) {
	ctx, cancel := c.withDefaultTimeout(ctx)
	defer cancel()
	p, err := c.current()
	if err != nil {
		return nil, err
	}
	t := &Txn{c: c}
	if len(p.grpc) > 0 {
		t.g = p.grpc[p.next.Add(1)%uint64(len(p.grpc))]
		resp, err := t.g.txn().Begin(ctx, &kvdbv1.BeginRequest{})
		if err != nil {
			return nil, grpcErr(err)
		}
		t.id = resp.GetTxnId()
		return t, nil
	}
	// A binary transaction needs a connection of its own: the pool's
	// connections are shared by other calls that must not run inside it.
	dctx, dcancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer dcancel()
	b, err := dialBinary(dctx, p.addr, p.dial)
	if err != nil {
		return nil, &Error{Code: codes.Unavailable, Message: err.Error()}
	}
	t.bin = b
	if _, err := t.binary(ctx, &wire.Request{Op: wire.OpBegin}); err != nil {
		b.close()
		return nil, err
	}
	return t, nil
}

func (t *Txn) binary(ctx context.Context, req *wire.Request) (*wire.Response, error) {
	f := newFuture()
	t.bin.queue(req, f)
	return f.result(ctx)
}

func (t *Txn) check() error {
	if t.done {
		return errors.New("kvdb: transaction already committed or rolled back")
	}
	return nil
}

// Get reads key inside the transaction.
func (t *Txn) Get(ctx context.Context, key []byte) (KeyValue, error) {
	if err := t.check(); err != nil {
		return KeyValue{}, err
	}
	ctx, cancel := t.c.withDefaultTimeout(ctx)
	defer cancel()
	if t.g != nil {
		r, err := t.g.txn().Get(ctx, &kvdbv1.TxnServiceGetRequest{TxnId: t.id, Key: key})
		if err != nil {
			return KeyValue{}, grpcErr(err)
		}
		return toKV(fromProtoKV(r.GetKv())), nil
	}
	r, err := t.binary(ctx, &wire.Request{Op: wire.OpGet, Flags: wire.FlagInTxn, Key: key})
	if err != nil {
		return KeyValue{}, err
	}
	return toKV(r.KV), nil
}

// Put buffers a write of key.
func (t *Txn) Put(ctx context.Context, key, value []byte) error {
	if err := t.check(); err != nil {
		return err
	}
	ctx, cancel := t.c.withDefaultTimeout(ctx)
	defer cancel()
	if t.g != nil {
		_, err := t.g.txn().Put(ctx, &kvdbv1.TxnServicePutRequest{TxnId: t.id, Key: key, Value: value})
		return grpcErr(err)
	}
	_, err := t.binary(ctx, &wire.Request{Op: wire.OpPut, Flags: wire.FlagInTxn, Key: key, Value: value})
	return err
}

// Delete buffers a delete of key.
func (t *Txn) Delete(ctx context.Context, key []byte) error {
	if err := t.check(); err != nil {
		return err
	}
	ctx, cancel := t.c.withDefaultTimeout(ctx)
	defer cancel()
	if t.g != nil {
		_, err := t.g.txn().Delete(ctx, &kvdbv1.TxnServiceDeleteRequest{TxnId: t.id, Key: key})
		return grpcErr(err)
	}
	_, err := t.binary(ctx, &wire.Request{Op: wire.OpDelete, Flags: wire.FlagInTxn, Key: key})
	return err
}

// Commit applies the transaction and returns its revision.
func (t *Txn) Commit(ctx context.Context) (int64, error) {
	if err := t.check(); err != nil {
		return 0, err
	}
	t.done = true
	ctx, cancel := t.c.withDefaultTimeout(ctx)
	defer cancel()
	if t.g != nil {
		r, err := t.g.txn().Commit(ctx, &kvdbv1.CommitRequest{TxnId: t.id})
		return r.GetHeader().GetRevision(), grpcErr(err)
	}
	defer t.bin.close()
	r, err := t.binary(ctx, &wire.Request{Op: wire.OpCommit})
	if err != nil {
		return 0, err
	}
	return r.Revision, nil
}

// Rollback discards the transaction.
func (t *Txn) Rollback(ctx context.Context) error {
	if t.done {
		return nil
	}
	t.done = true
	ctx, cancel := t.c.withDefaultTimeout(ctx)
	defer cancel()
	if t.g != nil {
		_, err := t.g.txn().Rollback(ctx, &kvdbv1.RollbackRequest{TxnId: t.id})
		return grpcErr(err)
	}
	defer t.bin.close()
	_, err := t.binary(ctx, &wire.Request{Op: wire.OpRollback})
	return err
}

// CompareAndSwap stores value under key only if key currently holds expect,
// atomically, and reports whether it did. It is not retried: a timeout
// leaves the outcome unknown.
func (c *Client) CompareAndSwap(ctx context.Context, key, expect, value []byte) (bool, error) {
	ctx, cancel := c.withDefaultTimeout(ctx)
	defer cancel()
	p, err := c.current()
	if err != nil {
		return false, err
	}
	if len(p.grpc) > 0 {
		g := p.grpc[p.next.Add(1)%uint64(len(p.grpc))]
		r, err := g.txn().Execute(ctx, &kvdbv1.ExecuteRequest{
			Compares: []*kvdbv1.Compare{{Key: key, Operator: kvdbv1.CompareOperator_COMPARE_OPERATOR_EQUAL, Operand: &kvdbv1.Compare_Value{Value: expect}}},
			Success:  []*kvdbv1.ExecuteOp{{Op: &kvdbv1.ExecuteOp_Put{Put: &kvdbv1.PutRequest{Key: key, Value: value}}}},
		})
		if err != nil {
			return false, grpcErr(err)
		}
		return r.GetSucceeded(), nil
	}
	r, err := c.startOn(ctx, p, &wire.Request{Op: wire.OpTxn,
		Compares: []wire.Compare{{Key: key, Target: wire.TargetValue, Result: wire.CompareEqual, Value: expect}},
		Ops:      []wire.BatchOp{{Type: wire.BatchPut, Key: key, Value: value}},
	}, true).Wait(ctx)
	if err != nil {
		return false, err
	}
	return r.Succeeded, nil
}

func (c *Client) withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.opts.RequestTimeout)
}

func (g *grpcConn) txn() kvdbv1.TxnServiceClient { return kvdbv1.NewTxnServiceClient(g.conn) }

// grpcErr turns a gRPC status into the client's *Error.
func grpcErr(err error) error {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok {
		return &Error{Code: st.Code(), Message: st.Message()}
	}
	return err
}
