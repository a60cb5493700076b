package service

import (
	"time"

	"google.golang.org/protobuf/proto"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	"github.com/kvdb/kvdb/internal/engine"
	"github.com/kvdb/kvdb/internal/wire"
)

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
	case wire.OpStats:
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
			c.put(req)
		default:
			c.delete(req)
		}
	case wire.OpBatch:
		c.batch(req)
	}
}

// read validates a GET or RANGE and either serves it now (serializable) or
// queues it for the next ReadIndex batch.
func (c *binaryConn) read(req *wire.Request) {
	start := time.Now()
	if err := c.validateRead(req); err != nil {
		c.send(errorReply(req.Op, req.ID, err))
		return
	}
	if req.Flags&wire.FlagSerializable != 0 {
		c.mu.Lock()
		c.out = c.s.appendRead(c.out, req.Op, req.Flags, req.ID, req.Key, req.End, req.Limit)
		c.mu.Unlock()
		c.release()
		c.s.ops.observe("binary", opName(req.Op), time.Since(start))
		return
	}
	// One allocation holds both keys: they must outlive the reader's buffer.
	buf := make([]byte, len(req.Key)+len(req.End))
	copy(buf, req.Key)
	copy(buf[len(req.Key):], req.End)
	c.reads = append(c.reads, pendingRead{
		op: req.Op, flags: req.Flags, id: req.ID, limit: req.Limit, start: start,
		key: buf[:len(req.Key):len(req.Key)], end: buf[len(req.Key):],
	})
}

func (c *binaryConn) validateRead(req *wire.Request) error {
	if req.Op == wire.OpGet {
		return c.s.limits.checkKey(req.Key)
	}
	if req.Limit < 0 {
		return invalidf("limit must not be negative")
	}
	_, _, err := c.s.rangeBounds(req.Key, req.End, req.Flags&wire.FlagPrefix != 0)
	return err
}

// dispatchReads starts one goroutine that confirms a read index for every
// queued linearizable read and then answers them all.
func (c *binaryConn) dispatchReads() {
	if len(c.reads) == 0 {
		return
	}
	reads := c.reads
	c.reads = nil
	c.b.wg.Add(1)
	go func() {
		defer c.b.wg.Done()
		if h := c.s.testHookBeforeReadIndex; h != nil {
			h()
		}
		ctx, cancel := c.requestContext()
		err := c.s.node.ReadIndex(ctx)
		cancel()
		c.mu.Lock()
		for _, r := range reads {
			if err != nil {
				c.out = errorReply(r.op, r.id, err)(c.out)
			} else {
				c.out = c.s.appendRead(c.out, r.op, r.flags, r.id, r.key, r.end, r.limit)
			}
		}
		c.mu.Unlock()
		for _, r := range reads {
			c.release()
			c.s.ops.observe("binary", opName(r.op), time.Since(r.start))
		}
		c.flush()
	}()
}

// appendRead reads the engine and appends the reply of a validated GET or
// RANGE.
func (s *Server) appendRead(b []byte, op wire.Opcode, flags uint8, id uint64, key, end []byte, limit int64) []byte {
	if op == wire.OpGet {
		kv, ok := s.store.Get(key)
		if !ok {
			return wire.AppendError(b, op, id, WireStatus(ErrKeyNotFound), ErrKeyNotFound.Error())
		}
		return wire.AppendResponse(b, &wire.Response{Op: op, ID: id, Revision: s.store.Revision(), KV: wireKV(kv, false)})
	}
	_, end, _ = s.rangeBounds(key, end, flags&wire.FlagPrefix != 0)
	l := int(limit)
	if l == 0 || l > s.limits.MaxRangeLimit {
		l = s.limits.MaxRangeLimit
	}
	keysOnly, countOnly := flags&wire.FlagKeysOnly != 0, flags&wire.FlagCountOnly != 0
	r := s.store.Range(key, end, engine.RangeOptions{Limit: l, KeysOnly: keysOnly, CountOnly: countOnly})
	resp := &wire.Response{Op: op, ID: id, Revision: r.Revision, Count: r.Count, More: r.More}
	if !countOnly {
		resp.KVs = make([]wire.KeyValue, len(r.KVs))
		for i, kv := range r.KVs {
			resp.KVs[i] = wireKV(kv, keysOnly)
		}
	}
	return wire.AppendResponse(b, resp)
}

func wireKV(kv engine.KeyValue, keysOnly bool) wire.KeyValue {
	w := wire.KeyValue{Key: kv.Key, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version}
	if !keysOnly {
		w.Value = kv.Value
	}
	return w
}

func opName(op wire.Opcode) string { return op.String() }

// write hands an encoded command to the coalescer; reply builds the answer
// from the applied result.
func (c *binaryConn) write(op wire.Opcode, id uint64, data []byte, grow int64, reply func([]byte, engine.Result) []byte) {
	start := time.Now()
	c.writes.Add(1)
	done := func(res engine.Result, err error) {
		defer c.writes.Done()
		if err != nil {
			c.sendAsync(errorReply(op, id, err))
		} else {
			c.sendAsync(func(b []byte) []byte { return reply(b, res) })
		}
		c.s.ops.observe("binary", opName(op), time.Since(start))
	}
	// submit blocks only while the coalescer's queue is full; the
	// connection's context ends that wait when the connection closes.
	if err := c.s.writes.submit(c.ctx, pendingWrite{data: data, grow: grow, done: done}); err != nil {
		done(engine.Result{}, err)
	}
}

func (c *binaryConn) put(req *wire.Request) {
	if err := c.checkWrite(req); err != nil {
		c.send(errorReply(req.Op, req.ID, err))
		return
	}
	if err := c.s.limits.checkValue(req.Value); err != nil {
		c.send(errorReply(req.Op, req.ID, err))
		return
	}
	prev := req.Flags&wire.FlagPrevKV != 0
	id := req.ID
	c.write(wire.OpPut, id, encodePut(req.Key, req.Value, prev), entryGrowth(req.Key, req.Value), func(b []byte, res engine.Result) []byte {
		resp := wire.Response{Op: wire.OpPut, ID: id, Revision: res.Revision}
		if prev && len(res.Ops) > 0 && len(res.Ops[0].Prev) > 0 {
			resp.Flags = wire.FlagHasPrevKV
			resp.KV = wireKV(res.Ops[0].Prev[0], false)
		}
		return wire.AppendResponse(b, &resp)
	})
}

func (c *binaryConn) checkWrite(req *wire.Request) error {
	return c.s.limits.checkKey(req.Key)
}

func (c *binaryConn) delete(req *wire.Request) {
	if err := c.checkWrite(req); err != nil {
		c.send(errorReply(req.Op, req.ID, err))
		return
	}
	key, end := req.Key, req.End
	if req.Flags&wire.FlagPrefix != 0 {
		end = engine.PrefixEnd(key)
	}
	if err := c.s.limits.checkRangeEnd(key, end); err != nil {
		c.send(errorReply(req.Op, req.ID, err))
		return
	}
	prev := req.Flags&wire.FlagPrevKV != 0
	data, err := proto.Marshal(&raftv1.Command{Op: &raftv1.Command_Delete{Delete: &raftv1.DeleteCommand{Key: key, RangeEnd: end, PrevKv: prev}}})
	if err != nil {
		c.send(errorReply(req.Op, req.ID, err))
		return
	}
	id := req.ID
	c.write(wire.OpDelete, id, data, 0, func(b []byte, res engine.Result) []byte {
		resp := wire.Response{Op: wire.OpDelete, ID: id, Revision: res.Revision}
		if len(res.Ops) > 0 {
			resp.Deleted = res.Ops[0].Deleted
			for _, kv := range res.Ops[0].Prev {
				resp.KVs = append(resp.KVs, wireKV(kv, false))
			}
		}
		return wire.AppendResponse(b, &resp)
	})
}

func (c *binaryConn) batch(req *wire.Request) {
	cmd, err := c.s.batchCommand(len(req.Ops), func(i int) (bool, []byte, []byte) {
		o := req.Ops[i]
		return o.Type == wire.BatchDelete, o.Key, o.Value
	})
	if err != nil {
		c.send(errorReply(req.Op, req.ID, err))
		return
	}
	data, err := proto.Marshal(&raftv1.Command{Op: &raftv1.Command_Batch{Batch: cmd}})
	if err != nil {
		c.send(errorReply(req.Op, req.ID, err))
		return
	}
	id := req.ID
	c.write(wire.OpBatch, id, data, batchGrowth(cmd), func(b []byte, res engine.Result) []byte {
		resp := wire.Response{Op: wire.OpBatch, ID: id, Revision: res.Revision}
		for i, r := range res.Ops {
			if cmd.Ops[i].GetDelete() {
				resp.Deleted += r.Deleted
			} else {
				resp.Puts++
			}
		}
		return wire.AppendResponse(b, &resp)
	})
}

// batchCommand validates n batch operations read through op and builds the
// command; the gRPC and binary handlers share it.
func (s *Server) batchCommand(n int, op func(i int) (isDelete bool, key, value []byte)) (*raftv1.BatchCommand, error) {
	if n == 0 {
		return nil, invalidf("batch has no operations")
	}
	if n > s.limits.MaxBatchOps {
		return nil, invalidf("batch has %d operations, over the max-batch-ops limit of %d", n, s.limits.MaxBatchOps)
	}
	cmd := &raftv1.BatchCommand{Ops: make([]*raftv1.BatchCommandOp, n)}
	for i := range n {
		del, key, value := op(i)
		if err := s.limits.checkKey(key); err != nil {
			return nil, invalidf("op %d: %v", i, err)
		}
		if !del {
			if err := s.limits.checkValue(value); err != nil {
				return nil, invalidf("op %d: %v", i, err)
			}
		}
		// Copies: the command outlives the request's buffer.
		cmd.Ops[i] = &raftv1.BatchCommandOp{Delete: del, Key: append([]byte(nil), key...)}
		if !del {
			cmd.Ops[i].Value = append([]byte(nil), value...)
		}
	}
	return cmd, nil
}
