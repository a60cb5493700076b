package service

import (
	"context"
	"sync"
	"time"

	"github.com/kvdb/kvdb/internal/core"
	"github.com/kvdb/kvdb/internal/wire"
)

// The binary protocol's adapter: serve translates each decoded frame into
// core's operations and core's answers into reply frames. Everything a
// request means (validation, limits, admission, proposing, reading,
// transactions, error codes) is core's.

// coreOp is the operation name a binary request is recorded under; the same
// names gRPC requests use.
func coreOp(req *wire.Request) core.Op {
	inTxn := req.Flags&wire.FlagInTxn != 0
	switch req.Op {
	case wire.OpGet:
		return pick(inTxn, core.OpTxnGet, core.OpGet)
	case wire.OpRange:
		return pick(inTxn, core.OpTxnRange, core.OpRange)
	case wire.OpPut:
		return pick(inTxn, core.OpTxnPut, core.OpPut)
	case wire.OpDelete:
		return pick(inTxn, core.OpTxnDelete, core.OpDelete)
	case wire.OpBatch:
		return core.OpBatch
	case wire.OpBegin:
		return core.OpBegin
	case wire.OpCommit:
		return core.OpCommit
	case wire.OpRollback:
		return core.OpRollback
	case wire.OpTxn:
		return core.OpExecute
	}
	return 0
}

func pick(cond bool, a, b core.Op) core.Op {
	if cond {
		return a
	}
	return b
}

// serve dispatches one decoded request. req aliases the reader's buffer, so
// anything that outlives this call is copied first.
func (c *binaryConn) serve(req *wire.Request) {
	op, id := req.Op, req.ID
	c.s.metrics.binaryRequest(op)
	switch op {
	case wire.OpPing:
		payload := req.Payload
		c.send(func(b []byte) []byte {
			return wire.AppendResponse(b, &wire.Response{Op: wire.OpPing, ID: id, Payload: payload})
		})
	case wire.OpAuth:
		c.authenticate(req)
	case wire.OpStats:
		if err := c.s.core.RequireRoot(c.ctx); err != nil {
			c.send(errorReply(op, id, err))
			return
		}
		js, err := statsJSON(c.s.Stats())
		if err != nil {
			c.send(errorReply(op, id, err))
			return
		}
		c.send(func(b []byte) []byte {
			return wire.AppendResponse(b, &wire.Response{Op: wire.OpStats, ID: id, Payload: js})
		})
	case wire.OpBegin, wire.OpCommit, wire.OpRollback, wire.OpTxn:
		c.serveTxn(req)
	case wire.OpGet, wire.OpRange, wire.OpPut, wire.OpDelete:
		if req.Flags&wire.FlagInTxn != 0 {
			c.serveTxn(req)
			return
		}
		switch op {
		case wire.OpGet, wire.OpRange:
			c.read(req)
		case wire.OpPut:
			c.write(req, func() (core.Write, error) {
				return c.s.core.PreparePut(c.ctx, req.Key, req.Value, req.Flags&wire.FlagPrevKV != 0)
			})
		default:
			c.write(req, func() (core.Write, error) {
				return c.s.core.PrepareDelete(c.ctx, req.Key, req.End, req.Flags&wire.FlagPrefix != 0, req.Flags&wire.FlagPrevKV != 0)
			})
		}
	case wire.OpBatch:
		c.write(req, func() (core.Write, error) {
			ops := make([]core.BatchOp, len(req.Ops))
			for i, o := range req.Ops {
				ops[i] = core.BatchOp{Delete: o.Type == wire.BatchDelete, Key: o.Key, Value: o.Value}
			}
			return c.s.core.PrepareBatch(c.ctx, ops)
		})
	}
}

// authenticate makes the connection the user AUTH names, by password, or,
// with an empty name, by a token from Authenticate; a failure leaves the
// connection as it was.
func (c *binaryConn) authenticate(req *wire.Request) {
	from := ""
	if a := c.c.RemoteAddr(); a != nil {
		from = hostOf(a.String())
	}
	ctx, err := c.s.core.OpenSession(c.base, string(req.Key), string(req.Value), from)
	if err != nil {
		c.send(errorReply(req.Op, req.ID, err))
		return
	}
	c.ctx = ctx
	id := req.ID
	c.send(func(b []byte) []byte { return wire.AppendResponse(b, &wire.Response{Op: wire.OpAuth, ID: id}) })
}

// readRequest is a validated GET or RANGE.
type readRequest struct {
	op    wire.Opcode
	flags uint8
	id    uint64
	r     core.RangeRequest // Key alone for a GET
	start time.Time
	// keyLen and endLen locate Key and End in the batch's keys, once the
	// request is queued for a ReadIndex.
	keyLen, endLen int
}

// readBatch is the linearizable reads of a connection that share one
// ReadIndex: the requests and one buffer holding their keys (copied out of
// the reader's buffer). Batches are pooled, so a steady stream of reads
// allocates nothing.
type readBatch struct {
	reads []readRequest
	keys  []byte
}

var readBatches = sync.Pool{New: func() any { return new(readBatch) }}

// read validates a GET or RANGE and either serves it now (serializable) or
// queues it for the next ReadIndex batch.
func (c *binaryConn) read(req *wire.Request) {
	rr := readRequest{op: req.Op, flags: req.Flags, id: req.ID, start: time.Now(), r: core.RangeRequest{
		Key: req.Key, End: req.End, Prefix: req.Flags&wire.FlagPrefix != 0, Limit: req.Limit,
		KeysOnly: req.Flags&wire.FlagKeysOnly != 0, CountOnly: req.Flags&wire.FlagCountOnly != 0,
	}}
	var err error
	if req.Op == wire.OpGet {
		err = c.s.core.CheckGet(c.ctx, req.Key)
	} else {
		err = c.s.core.CheckRange(c.ctx, &rr.r)
	}
	if err != nil {
		c.send(errorReply(req.Op, req.ID, err))
		c.finish(core.Binary, coreOp(req), rr.start)
		return
	}
	// Serializable reads, and linearizable ones when the node can serve
	// them with no ReadIndex to wait for, are answered inline.
	if req.Flags&wire.FlagSerializable != 0 || c.s.core.ReadableNow() {
		c.mu.Lock()
		c.out = c.appendRead(c.out, &rr)
		over := c.backloggedLocked()
		c.mu.Unlock()
		c.release()
		c.finish(core.Binary, coreOp(req), rr.start)
		if over {
			c.close()
		}
		return
	}
	// The keys must outlive the reader's buffer: the batch's key buffer
	// holds them, and dispatchReads points the requests into it.
	if c.reads == nil {
		c.reads = readBatches.Get().(*readBatch)
	}
	rr.keyLen, rr.endLen = len(rr.r.Key), len(rr.r.End)
	c.reads.keys = append(append(c.reads.keys, rr.r.Key...), rr.r.End...)
	rr.r.Key, rr.r.End = nil, nil
	c.reads.reads = append(c.reads.reads, rr)
}

// finish records a finished operation's latency.
func (c *binaryConn) finish(p core.Protocol, op core.Op, start time.Time) {
	c.s.core.Observe(p, op, start)
}

// dispatchReads starts one goroutine that confirms a read index for every
// queued linearizable read and then answers them all.
func (c *binaryConn) dispatchReads() {
	batch := c.reads
	if batch == nil {
		return
	}
	c.reads = nil
	keys := batch.keys
	for i := range batch.reads {
		rr := &batch.reads[i]
		rr.r.Key = keys[:rr.keyLen:rr.keyLen]
		rr.r.End = keys[rr.keyLen : rr.keyLen+rr.endLen : rr.keyLen+rr.endLen]
		keys = keys[rr.keyLen+rr.endLen:]
	}
	c.b.wg.Add(1)
	c.ev.handedOff()
	go c.answerReads(c.ctx, batch)
}

// answerReads waits for one ReadIndex and answers every read of batch.
func (c *binaryConn) answerReads(ctx context.Context, batch *readBatch) {
	defer c.b.wg.Done()
	reads := batch.reads
	err := c.s.core.WaitRead(ctx, false)
	c.mu.Lock()
	over := c.backlogClosed
	for i := range reads {
		if over {
			break // the connection is closing: the rest are dropped
		}
		if err != nil {
			c.out = wire.AppendError(c.out, reads[i].op, reads[i].id, WireStatus(err), errorMessage(err))
		} else {
			c.out = c.appendRead(c.out, &reads[i])
		}
		over = c.backloggedLocked()
	}
	c.mu.Unlock()
	for i := range reads {
		c.release()
		c.finish(core.Binary, coreOpOf(reads[i].op), reads[i].start)
	}
	if over {
		c.close()
	} else {
		c.flush()
	}
	clear(reads)
	if cap(batch.keys) <= 64<<10 && cap(reads) <= 4096 {
		batch.reads, batch.keys = reads[:0], batch.keys[:0]
		readBatches.Put(batch)
	}
}

func coreOpOf(op wire.Opcode) core.Op {
	if op == wire.OpGet {
		return core.OpGet
	}
	return core.OpRange
}

// appendRead reads the store and appends the reply of a validated GET or
// RANGE.
func (c *binaryConn) appendRead(b []byte, rr *readRequest) []byte {
	if rr.op == wire.OpGet {
		kv, rev, err := c.s.core.ReadGet(rr.r.Key)
		if err != nil {
			return wire.AppendError(b, rr.op, rr.id, WireStatus(err), err.Error())
		}
		return wire.AppendResponse(b, &wire.Response{Op: rr.op, ID: rr.id, Revision: rev, KV: wireKV(kv, false)})
	}
	r := c.s.core.ReadRange(&rr.r)
	resp := &wire.Response{Op: rr.op, ID: rr.id, Revision: r.Revision, Count: r.Count, More: r.More}
	if !rr.r.CountOnly {
		resp.KVs = wireKVs(r.KVs, rr.r.KeysOnly)
	}
	return wire.AppendResponse(b, resp)
}

func wireKV(kv core.KeyValue, keysOnly bool) wire.KeyValue {
	w := wire.KeyValue{Key: kv.Key, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version}
	if !keysOnly {
		w.Value = kv.Value
	}
	return w
}

func wireKVs(kvs []core.KeyValue, keysOnly bool) []wire.KeyValue {
	out := make([]wire.KeyValue, len(kvs))
	for i, kv := range kvs {
		out[i] = wireKV(kv, keysOnly)
	}
	return out
}

// write prepares a PUT, DELETE or BATCH (which copies what it needs out of
// the reader's buffer) and hands it to core; the reply is built when it
// has been applied.
func (c *binaryConn) write(req *wire.Request, prepare func() (core.Write, error)) {
	start := time.Now()
	op, id, cop := req.Op, req.ID, coreOp(req)
	w, err := prepare()
	if err != nil {
		c.send(errorReply(op, id, err))
		c.finish(core.Binary, cop, start)
		return
	}
	c.writes.Add(1)
	c.ev.handedOff()
	// Submit blocks only while core's write queue is full; the connection's
	// context ends that wait when the connection closes.
	c.s.core.Submit(c.ctx, w, func(res core.WriteResult, err error) {
		defer c.writes.Done()
		c.mu.Lock()
		if err != nil {
			c.out = wire.AppendError(c.out, op, id, WireStatus(err), errorMessage(err))
		} else {
			c.out = appendWriteReply(c.out, op, id, &res)
		}
		over := c.backloggedLocked()
		c.mu.Unlock()
		if over {
			c.close()
		}
		c.release()
		// Counted before the reply can leave: a STATS the client sends
		// after it must include this write.
		c.finish(core.Binary, cop, start)
		c.wake()
	})
}

// appendWriteReply encodes the reply of an applied PUT, DELETE or BATCH.
func appendWriteReply(b []byte, op wire.Opcode, id uint64, res *core.WriteResult) []byte {
	resp := wire.Response{Op: op, ID: id, Revision: res.Revision}
	switch op {
	case wire.OpPut:
		if len(res.Prev) > 0 {
			resp.Flags = wire.FlagHasPrevKV
			resp.KV = wireKV(res.Prev[0], false)
		}
	case wire.OpDelete:
		resp.Deleted = res.Deleted
		if len(res.Prev) > 0 {
			resp.KVs = wireKVs(res.Prev, false)
		}
	case wire.OpBatch:
		resp.Puts, resp.Deleted = res.Puts, res.Deleted
	}
	return wire.AppendResponse(b, &resp)
}
