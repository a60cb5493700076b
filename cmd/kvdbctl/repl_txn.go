package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc/codes"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// The REPL's interactive transactions: BEGIN [txid] opens one on the server,
// GET/PUT/DELETE/RANGE then go to it (the prompt shows it), and COMMIT or
// ROLLBACK ends it. The server validates every read at COMMIT and answers
// ABORTED if another client changed one: run the transaction again.

// prompt is "kvdb> ", or "kvdb(tx1)> " inside a transaction.
func (a *app) prompt() string {
	if a.txnID != "" {
		return "kvdb(" + a.txnID + ")> "
	}
	return prompt
}

func (a *app) txnBegin(ctx context.Context, w io.Writer, args string) error {
	fields := strings.Fields(args)
	if len(fields) > 1 {
		return errors.New("usage: BEGIN [txid]")
	}
	if a.txnID != "" {
		return fmt.Errorf("already in transaction %s: COMMIT or ROLLBACK it first", a.txnID)
	}
	req := &kvdbv1.BeginRequest{}
	if len(fields) == 1 {
		req.TxnId = fields[0]
	}
	resp, err := invoke(ctx, a, func(ctx context.Context, c *client) (*kvdbv1.BeginResponse, error) {
		return c.txn.Begin(ctx, req)
	})
	if err != nil {
		return err
	}
	a.txnID = resp.GetTxnId()
	return writeText(w, "OK (transaction %s at revision %d)\n", a.txnID, resp.GetStartRevision())
}

func (a *app) txnEnd(ctx context.Context, w io.Writer, name, args string) error {
	if strings.TrimSpace(args) != "" {
		return fmt.Errorf("usage: %s", name)
	}
	if a.txnID == "" {
		return fmt.Errorf("%s without a transaction: BEGIN one first", name)
	}
	id := a.txnID
	// The transaction ends whatever the answer: a failed COMMIT discarded
	// it on the server.
	a.txnID = ""
	if name == "ROLLBACK" {
		_, err := invoke(ctx, a, func(ctx context.Context, c *client) (*kvdbv1.RollbackResponse, error) {
			return c.txn.Rollback(ctx, &kvdbv1.RollbackRequest{TxnId: id})
		})
		if err != nil {
			return err
		}
		return writeText(w, "OK (rolled back)\n")
	}
	resp, err := invoke(ctx, a, func(ctx context.Context, c *client) (*kvdbv1.CommitResponse, error) {
		return c.txn.Commit(ctx, &kvdbv1.CommitRequest{TxnId: id})
	})
	if err != nil {
		if st, ok := grpcStatus(err); ok && st.Code() == codes.Aborted {
			return fmt.Errorf("%w (nothing was applied; run the transaction again)", err)
		}
		return err
	}
	return writeText(w, "OK (committed at revision %d)\n", resp.GetHeader().GetRevision())
}

// txnCall runs one call inside the open transaction. If the server says the
// transaction is gone (expired, unknown), the shell leaves it.
func txnCall[T any](ctx context.Context, a *app, rpc func(context.Context, *client, string) (T, error)) (T, error) {
	id := a.txnID
	resp, err := invoke(ctx, a, func(ctx context.Context, c *client) (T, error) { return rpc(ctx, c, id) })
	if st, ok := grpcStatus(err); ok {
		gone := st.Code() == codes.FailedPrecondition || (st.Code() == codes.NotFound && strings.Contains(st.Message(), "transaction"))
		if gone {
			a.txnID = ""
			return resp, fmt.Errorf("%w; left transaction %s", err, id)
		}
	}
	return resp, err
}

func (a *app) txnGet(ctx context.Context, w io.Writer, key string) error {
	resp, err := txnCall(ctx, a, func(ctx context.Context, c *client, id string) (*kvdbv1.TxnServiceGetResponse, error) {
		return c.txn.Get(ctx, &kvdbv1.TxnServiceGetRequest{TxnId: id, Key: []byte(key)})
	})
	if st, ok := grpcStatus(err); ok && st.Code() == codes.NotFound && a.txnID != "" {
		return writeText(w, "(nil)\n")
	}
	if err != nil {
		return err
	}
	return writeLine(w, resp.GetKv().GetValue())
}

func (a *app) txnPut(ctx context.Context, w io.Writer, key, value string) error {
	_, err := txnCall(ctx, a, func(ctx context.Context, c *client, id string) (*kvdbv1.TxnServicePutResponse, error) {
		return c.txn.Put(ctx, &kvdbv1.TxnServicePutRequest{TxnId: id, Key: []byte(key), Value: []byte(value)})
	})
	if err != nil {
		return err
	}
	return writeText(w, "QUEUED\n")
}

func (a *app) txnDelete(ctx context.Context, w io.Writer, key string) error {
	_, err := txnCall(ctx, a, func(ctx context.Context, c *client, id string) (*kvdbv1.TxnServiceDeleteResponse, error) {
		return c.txn.Delete(ctx, &kvdbv1.TxnServiceDeleteRequest{TxnId: id, Key: []byte(key)})
	})
	if err != nil {
		return err
	}
	return writeText(w, "QUEUED\n")
}

func (a *app) txnRange(ctx context.Context, w io.Writer, req *kvdbv1.RangeRequest) error {
	resp, err := txnCall(ctx, a, func(ctx context.Context, c *client, id string) (*kvdbv1.TxnServiceRangeResponse, error) {
		return c.txn.Range(ctx, &kvdbv1.TxnServiceRangeRequest{TxnId: id, Key: req.GetKey(), RangeEnd: req.GetRangeEnd(), Prefix: req.GetPrefix(), Limit: req.GetLimit()})
	})
	if err != nil {
		return err
	}
	if len(resp.GetKvs()) == 0 {
		return writeText(w, "(empty)\n")
	}
	for _, kv := range resp.GetKvs() {
		if err := writeLine(w, kv.GetKey()); err != nil {
			return err
		}
		if err := writeLine(w, kv.GetValue()); err != nil {
			return err
		}
	}
	return nil
}
