package service

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/kvdb/kvdb/internal/engine"
	"github.com/kvdb/kvdb/internal/raftnode"
)

// Coalescing bounds: one raft entry carries at most this many client writes
// and about this many bytes, so an entry stays far below raft's message size
// and one slow entry delays few writes.
const (
	coalesceMaxOps      = 512
	coalesceMaxBytes    = 1 << 20
	coalesceMaxInFlight = 8 // coalesced proposals waiting on raft at once
	coalesceQueue       = 8192
)

// pendingWrite is one client write waiting to be proposed: an encoded
// raftv1.Command (never a multi) and what to do with its result. done is
// called exactly once, from a coalescer goroutine; it must not block.
type pendingWrite struct {
	data []byte
	done func(engine.Result, error)
	// grow is the most the write adds to MemoryUsage (0 for deletes).
	grow int64
}

// coalescer gathers independent writes from many handlers into few raft
// entries (MultiCommand). Writes that arrive while earlier entries are in
// flight queue up and leave together in the next entry, so under load the
// cost of a proposal, a WAL record and an apply step is shared by hundreds
// of writes; a lone write is proposed alone, as a plain command.
//
// The order of writes inside an entry is the order they were queued; each is
// applied at its own revision, so every replica applies the same sequence.
type coalescer struct {
	s     *Server
	in    chan pendingWrite
	sem   chan struct{}
	stopC <-chan struct{}
	wg    sync.WaitGroup
}

func newCoalescer(s *Server, stopC <-chan struct{}) *coalescer {
	c := &coalescer{
		s:     s,
		in:    make(chan pendingWrite, coalesceQueue),
		sem:   make(chan struct{}, coalesceMaxInFlight),
		stopC: stopC,
	}
	c.wg.Add(1)
	go c.run()
	return c
}

// submit admits a write against MaxMemory and queues it. It blocks while
// the queue is full (backpressure on the caller), or while the write waits
// for eviction to make room, until ctx ends or the server stops.
func (c *coalescer) submit(ctx context.Context, w pendingWrite) (err error) {
	if err := c.s.limits.checkRequestSize(len(w.data)); err != nil {
		return err
	}
	release, err := c.s.mem.admit(ctx, c.stopC, w.grow)
	if err != nil {
		return err
	}
	done := w.done
	w.done = func(r engine.Result, err error) {
		release()
		done(r, err)
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	select {
	case c.in <- w:
		return nil
	default:
	}
	select {
	case c.in <- w:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.stopC:
		return raftnode.ErrStopped
	}
}

// wait submits a write and waits for its result: the synchronous form used
// by the gRPC handlers.
func (c *coalescer) wait(ctx context.Context, data []byte, grow int64) (engine.Result, error) {
	type out struct {
		res engine.Result
		err error
	}
	ch := make(chan out, 1)
	err := c.submit(ctx, pendingWrite{data: data, grow: grow, done: func(r engine.Result, err error) { ch <- out{r, err} }})
	if err != nil {
		return engine.Result{}, err
	}
	select {
	case o := <-ch:
		return o.res, o.err
	case <-ctx.Done():
		return engine.Result{}, ctx.Err()
	}
}

func (c *coalescer) run() {
	defer c.wg.Done()
	for {
		var first pendingWrite
		select {
		case first = <-c.in:
		case <-c.stopC:
			c.failQueued()
			return
		}
		// Take a proposal slot first: while every slot is busy, writes keep
		// queueing and leave together once one frees.
		select {
		case c.sem <- struct{}{}:
		case <-c.stopC:
			first.done(engine.Result{}, raftnode.ErrStopped)
			c.failQueued()
			return
		}
		batch := []pendingWrite{first}
		size := len(first.data)
	drain:
		for len(batch) < coalesceMaxOps && size < coalesceMaxBytes {
			select {
			case w := <-c.in:
				batch = append(batch, w)
				size += len(w.data)
			default:
				break drain
			}
		}
		// Enqueue here, in the order the writes arrived, so entries reach
		// the log in that order; only the waiting happens concurrently.
		data := batch[0].data
		if len(batch) > 1 {
			data = encodeMulti(batch)
		}
		p, err := c.s.node.Enqueue(data)
		if err != nil {
			<-c.sem
			for _, w := range batch {
				w.done(engine.Result{}, err)
			}
			continue
		}
		c.wg.Add(1)
		go c.await(batch, p)
	}
}

func (c *coalescer) failQueued() {
	for {
		select {
		case w := <-c.in:
			w.done(engine.Result{}, raftnode.ErrStopped)
		default:
			return
		}
	}
}

// await waits for an enqueued entry and hands each write its result.
func (c *coalescer) await(batch []pendingWrite, p *raftnode.Proposal) {
	defer c.wg.Done()
	defer func() { <-c.sem }()
	ctx, cancel := context.WithTimeout(context.Background(), c.s.cfg.RequestTimeout)
	defer cancel()
	v, err := p.Wait(ctx)
	if len(batch) == 1 {
		r, _ := v.(applyResult)
		if err == nil {
			err = r.err
		}
		batch[0].done(r.res, err)
		return
	}
	if err != nil {
		for _, w := range batch {
			w.done(engine.Result{}, err)
		}
		return
	}
	results, ok := v.(multiResult)
	if !ok || len(results) != len(batch) {
		err := fmt.Errorf("service: unexpected apply result %T for %d coalesced writes", v, len(batch))
		if ar, isAR := v.(applyResult); isAR && ar.err != nil {
			err = ar.err
		}
		for _, w := range batch {
			w.done(engine.Result{}, err)
		}
		return
	}
	for i, w := range batch {
		w.done(results[i].res, results[i].err)
	}
}

// Field numbers of raftv1.Command and raftv1.MultiCommand, for encoding a
// multi around already-encoded commands without decoding them again.
const (
	commandMultiField  = 5
	multiCommandsField = 1
)

// encodeMulti builds the bytes of Command{multi: MultiCommand{commands}}
// from the encoded commands: the same bytes proto.Marshal would produce.
func encodeMulti(batch []pendingWrite) []byte {
	inner := 0
	for _, w := range batch {
		inner += protowire.SizeTag(multiCommandsField) + protowire.SizeBytes(len(w.data))
	}
	buf := make([]byte, 0, protowire.SizeTag(commandMultiField)+protowire.SizeBytes(inner))
	buf = protowire.AppendTag(buf, commandMultiField, protowire.BytesType)
	buf = protowire.AppendVarint(buf, uint64(inner))
	for _, w := range batch {
		buf = protowire.AppendTag(buf, multiCommandsField, protowire.BytesType)
		buf = protowire.AppendBytes(buf, w.data)
	}
	return buf
}

// Field numbers of raftv1.Command's put and raftv1.PutCommand.
const (
	commandPutField = 1
	putKeyField     = 1
	putValueField   = 2
	putPrevKVField  = 3
)

// encodePut returns the bytes of Command{put: PutCommand{key, value,
// prev_kv}} as proto.Marshal produces them, without building the messages:
// the binary protocol's PUT path encodes straight from the frame.
func encodePut(key, value []byte, prevKV bool) []byte {
	inner := protowire.SizeTag(putKeyField) + protowire.SizeBytes(len(key))
	if len(value) > 0 {
		inner += protowire.SizeTag(putValueField) + protowire.SizeBytes(len(value))
	}
	if prevKV {
		inner += protowire.SizeTag(putPrevKVField) + 1
	}
	buf := make([]byte, 0, protowire.SizeTag(commandPutField)+protowire.SizeBytes(inner))
	buf = protowire.AppendTag(buf, commandPutField, protowire.BytesType)
	buf = protowire.AppendVarint(buf, uint64(inner))
	buf = protowire.AppendTag(buf, putKeyField, protowire.BytesType)
	buf = protowire.AppendBytes(buf, key)
	if len(value) > 0 {
		buf = protowire.AppendTag(buf, putValueField, protowire.BytesType)
		buf = protowire.AppendBytes(buf, value)
	}
	if prevKV {
		buf = protowire.AppendTag(buf, putPrevKVField, protowire.VarintType)
		buf = protowire.AppendVarint(buf, 1)
	}
	return buf
}
