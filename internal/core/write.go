package core

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kvdb/kvdb/internal/command"
	"github.com/kvdb/kvdb/internal/engine"
	"github.com/kvdb/kvdb/internal/fsm"
)

// Write is a validated write, encoded for the log. It holds no reference
// to the caller's buffers, so a transport may reuse them at once.
type Write struct {
	op   Op
	data []byte
	grow int64 // the most the write adds to MemoryUsage
	puts int64 // puts of a batch
	rmw  bool  // a read-modify-write: its result is WriteResult.RMW
	// authRev is the auth revision the caller's permissions were checked
	// against (0: authentication off); the entry carries it, and the state
	// machine refuses the write if the auth state moved on meanwhile.
	authRev uint64
}

// Op is the operation the write was prepared for.
func (w Write) Op() Op { return w.op }

// WriteResult is an applied write's answer.
type WriteResult struct {
	Revision int64
	// Prev holds the previous key-value of a put (at most one) or the keys
	// a delete removed, when the request asked for them.
	Prev []KeyValue
	// Deleted is the number of keys a delete or batch removed.
	Deleted int64
	// Puts is the number of puts a batch applied.
	Puts int64
	// RMW is a read-modify-write's answer.
	RMW RMWResult
}

// BatchOp is one operation of a batch.
type BatchOp = command.BatchOp

// PreparePut validates and encodes a put the caller may write.
func (c *Core) PreparePut(ctx context.Context, key, value []byte, prevKV bool) (Write, error) {
	rev := c.authRevision()
	if _, err := c.authenticated(ctx); err != nil {
		return Write{}, err
	}
	if err := c.limits.checkKey(key); err != nil {
		return Write{}, err
	}
	if err := c.limits.checkValue(value); err != nil {
		return Write{}, err
	}
	if err := c.authorizeWrite(ctx, key, nil, prevKV); err != nil {
		return Write{}, err
	}
	// EncodePutMeta is EncodePut unless the clock is to be logged.
	data := command.EncodePutMeta(key, value, prevKV, 0, 0, c.writeClock())
	return Write{op: OpPut, data: data, grow: entryGrowth(key, value), authRev: rev}, nil
}

// writeClock is the clock a put, delete or batch carries in its log entry
// (unix ms) when some key is past its deadline but not yet deleted, so
// that on every replica the write sees such a key as absent, as reads do:
// a put starts it anew, a delete does not count it. 0 otherwise: the entry
// stays as small as it was, and every stored key counts.
func (c *Core) writeClock() int64 {
	d := c.store.EarliestDeadline()
	if d == 0 {
		return 0 // no key expires: no clock read on the write path
	}
	if now := nowMillis(); d <= now {
		return now
	}
	return 0
}

// PutOptions make a put's key expire: TTL after the put, or with Lease
// (which must exist when the put applies) when the lease is revoked or
// expires. Not both.
type PutOptions struct {
	TTL time.Duration
	// At is an absolute deadline in unix milliseconds, instead of TTL.
	At    int64
	Lease int64
}

// PreparePutOptions is PreparePut with an expiry. The key's deadline is
// fixed here, by this node's clock (now + TTL), and carried in the log
// entry, so every replica stores the same one.
func (c *Core) PreparePutOptions(ctx context.Context, key, value []byte, prevKV bool, o PutOptions) (Write, error) {
	if o.TTL == 0 && o.At == 0 && o.Lease == 0 {
		return c.PreparePut(ctx, key, value, prevKV)
	}
	w, err := c.PreparePut(ctx, key, value, prevKV)
	if err != nil {
		return Write{}, err
	}
	deadline, err := c.deadline(o.TTL, o.At)
	if err != nil {
		return Write{}, err
	}
	if deadline != 0 && o.Lease != 0 {
		return Write{}, invalidf("a put takes a ttl or a lease, not both")
	}
	if o.Lease < 0 {
		return Write{}, invalidf("lease id must not be negative")
	}
	// Whether the lease exists is decided when the entry applies, on every
	// replica alike (ErrLeaseNotFound then): this node's store may not
	// have applied a grant the leader already acknowledged.
	w.data = command.EncodePutMeta(key, value, prevKV, deadline, o.Lease, c.writeClock())
	w.grow = engine.EntryGrowthMeta(len(key), len(value))
	return w, nil
}

// deadline is a put's deadline in unix milliseconds (0: none) from a TTL
// or an absolute time at, after checking it against the limits. An
// absolute time already past is kept: the key is hidden at once and
// expired by the leader's next round.
func (c *Core) deadline(ttl time.Duration, at int64) (int64, error) {
	switch {
	case ttl != 0 && at != 0:
		return 0, invalidf("a put takes a ttl or an expiry time, not both")
	case at < 0:
		return 0, invalidf("invalid expire time")
	case at != 0:
		if err := c.limits.checkTTL(max(time.Until(time.UnixMilli(at)), time.Millisecond)); err != nil {
			return 0, err
		}
		return at, nil
	case ttl != 0:
		if err := c.limits.checkTTL(ttl); err != nil {
			return 0, err
		}
		if ttl > 0 {
			return DeadlineAfter(ttl), nil
		}
	}
	return 0, nil
}

// PutWith prepares and runs a put with an expiry; see PreparePutOptions.
func (c *Core) PutWith(ctx context.Context, key, value []byte, prevKV bool, o PutOptions) (WriteResult, error) {
	w, err := c.PreparePutOptions(ctx, key, value, prevKV, o)
	if err != nil {
		return WriteResult{}, err
	}
	return c.Do(ctx, w)
}

// PrepareDelete validates and encodes the delete of key, of [key, end), or
// of key's prefix, which the caller may write.
func (c *Core) PrepareDelete(ctx context.Context, key, end []byte, prefix, prevKV bool) (Write, error) {
	rev := c.authRevision()
	if _, err := c.authenticated(ctx); err != nil {
		return Write{}, err
	}
	if err := c.limits.checkKey(key); err != nil {
		return Write{}, err
	}
	if prefix {
		end = engine.PrefixEnd(key)
	}
	if err := c.limits.checkRangeEnd(key, end); err != nil {
		return Write{}, err
	}
	if err := c.authorizeWrite(ctx, key, end, prevKV); err != nil {
		return Write{}, err
	}
	data, err := command.EncodeDelete(key, end, prevKV, c.writeClock())
	if err != nil {
		return Write{}, err
	}
	return Write{op: OpDelete, data: data, authRev: rev}, nil
}

// PrepareBatch validates and encodes a batch, applied atomically at one
// revision; the caller must be allowed to write every key.
func (c *Core) PrepareBatch(ctx context.Context, ops []BatchOp) (Write, error) {
	rev := c.authRevision()
	if _, err := c.authenticated(ctx); err != nil {
		return Write{}, err
	}
	if len(ops) == 0 {
		return Write{}, invalidf("batch has no operations")
	}
	if len(ops) > c.limits.MaxBatchOps {
		return Write{}, invalidf("batch has %d operations, over the max-batch-ops limit of %d", len(ops), c.limits.MaxBatchOps)
	}
	w := Write{op: OpBatch, authRev: rev}
	for i, o := range ops {
		if err := c.limits.checkKey(o.Key); err != nil {
			return Write{}, invalidf("op %d: %v", i, err)
		}
		if err := c.authorizeWrite(ctx, o.Key, nil, o.Delete && o.PrevKV); err != nil {
			return Write{}, fmt.Errorf("op %d: %w", i, err)
		}
		if !o.Delete {
			if err := c.limits.checkValue(o.Value); err != nil {
				return Write{}, invalidf("op %d: %v", i, err)
			}
			w.grow += entryGrowth(o.Key, o.Value)
			w.puts++
		}
	}
	data, err := command.EncodeBatch(ops, c.writeClock())
	if err != nil {
		return Write{}, err
	}
	if err := c.limits.checkRequestSize(len(data)); err != nil {
		return Write{}, err
	}
	w.data = data
	return w, nil
}

// Submit queues a prepared write for the log and returns at once; done
// gets its result exactly once, usually from the raft node's apply loop,
// so it must be quick and must not block. Submit blocks only while the
// write queue is full or the write waits for eviction to make room, until
// ctx ends.
func (c *Core) Submit(ctx context.Context, w Write, done func(WriteResult, error)) {
	if err := c.writes.submit(ctx, pendingWrite{w: w, done: done}); err != nil {
		done(WriteResult{}, err)
	}
}

// doWaiter is what Do waits on: a channel for the result and the callback
// that fills it, made once and reused (doWaiters), so a call allocates
// neither.
type doWaiter struct {
	ch   chan doResult
	done func(WriteResult, error)
}

type doResult struct {
	res WriteResult
	err error
}

var doWaiters = sync.Pool{New: func() any {
	dw := &doWaiter{ch: make(chan doResult, 1)}
	dw.done = func(r WriteResult, err error) { dw.ch <- doResult{r, err} }
	return dw
}}

// Do proposes a prepared write and waits for its result.
func (c *Core) Do(ctx context.Context, w Write) (WriteResult, error) {
	ctx, cancel := c.requestContext(ctx)
	defer cancel()
	dw := doWaiters.Get().(*doWaiter)
	c.Submit(ctx, w, dw.done)
	select {
	case o := <-dw.ch:
		doWaiters.Put(dw)
		return o.res, o.err
	case <-ctx.Done():
		// The callback still comes, later: this waiter is not reused.
		return WriteResult{}, ctx.Err()
	}
}

// Put, Delete and Batch prepare and run a write in one call.
func (c *Core) Put(ctx context.Context, key, value []byte, prevKV bool) (WriteResult, error) {
	w, err := c.PreparePut(ctx, key, value, prevKV)
	if err != nil {
		return WriteResult{}, err
	}
	return c.Do(ctx, w)
}

// Delete removes key, [key, end) or key's prefix; see PrepareDelete.
func (c *Core) Delete(ctx context.Context, key, end []byte, prefix, prevKV bool) (WriteResult, error) {
	w, err := c.PrepareDelete(ctx, key, end, prefix, prevKV)
	if err != nil {
		return WriteResult{}, err
	}
	return c.Do(ctx, w)
}

// Batch applies ops atomically; see PrepareBatch.
func (c *Core) Batch(ctx context.Context, ops []BatchOp) (WriteResult, error) {
	w, err := c.PrepareBatch(ctx, ops)
	if err != nil {
		return WriteResult{}, err
	}
	return c.Do(ctx, w)
}

// result shapes the engine's result for the write's kind.
func (w Write) result(r engine.Result) (WriteResult, error) {
	out := WriteResult{Revision: r.Revision, Puts: w.puts}
	for _, o := range r.Ops {
		if o.NoLease {
			return WriteResult{}, ErrLeaseNotFound
		}
		out.Deleted += o.Deleted
		out.Prev = append(out.Prev, o.Prev...)
	}
	if w.op == OpPut && len(out.Prev) > 1 {
		out.Prev = out.Prev[:1]
	}
	return out, nil
}

// proposeAlone hands one encoded command to raft as its own entry and
// waits for its applied result.
type fsmResult = fsm.Result

func (c *Core) proposeAlone(ctx context.Context, data []byte) (fsm.Result, error) {
	if err := c.limits.checkRequestSize(len(data)); err != nil {
		return fsm.Result{}, err
	}
	v, err := c.node.Propose(ctx, data)
	if err != nil {
		return fsm.Result{}, err
	}
	r, _ := v.(fsm.Result)
	return r, r.Err
}
