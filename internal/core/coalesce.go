package core

import (
	"context"
	"fmt"
	"sync"

	"github.com/kvdb/kvdb/internal/command"
	"github.com/kvdb/kvdb/internal/engine"
	"github.com/kvdb/kvdb/internal/fsm"
	"github.com/kvdb/kvdb/internal/raftnode"
)

// Coalescing bounds: one raft entry carries at most this many client writes
// and about this many bytes, so an entry stays far below raft's message size
// and one slow entry delays few writes.
const (
	coalesceMaxOps   = 512
	coalesceMaxBytes = 1 << 20
	// coalesceMaxInFlight is how many coalesced proposals wait on raft at
	// once: one being made durable and one filling is enough; more only
	// cut the same writes into more, smaller entries, each costing a
	// proposal, a log record and an apply step (measured: 2 spends less
	// CPU per write than 4 or 8; docs/benchmarks.md). With an fsync per
	// write (-sync-writes) one is better still: the writes that
	// arrive during an fsync wait for it and leave together in the next
	// entry, so each fsync covers more writes (measured: 50 unpipelined
	// binary writers 14.1k → 15.7k writes/s, server CPU 62 → 49 µs per
	// write; pipelined the same throughput for less CPU), where with two
	// nearly every entry got an fsync of its own.
	coalesceMaxInFlight     = 2
	coalesceMaxInFlightSync = 1
	coalesceQueue           = 8192
)

// pendingWrite is one client write waiting to be proposed: a prepared
// write (never a multi) and the caller's callback. The coalescer calls
// finish exactly once per write, from its own goroutine or from the raft
// node's apply loop (raft loop for a dropped entry); done must be quick and
// must not block.
type pendingWrite struct {
	w    Write
	done func(WriteResult, error)
	// held is what admission reserved against MaxMemory for the write,
	// given back when it finishes.
	held int64
}

// coalescer gathers independent writes from many callers into few raft
// entries (multi commands). Writes that arrive while earlier entries are in
// flight queue up and leave together in the next entry, so under load the
// cost of a proposal, a WAL record and an apply step is shared by hundreds
// of writes; a lone write is proposed alone, as a plain command.
//
// The order of writes inside an entry is the order they were queued; each is
// applied at its own revision, so every replica applies the same sequence.
//
// Stopping: run marks the coalescer stopped under mu before it fails what
// is queued, and submit sends only under mu's read lock after checking
// that mark, so no write can land in the queue after the last drain and
// wait there for its deadline.
type coalescer struct {
	c   *Core
	in  chan pendingWrite
	sem chan struct{}
	wg  sync.WaitGroup

	mu      sync.RWMutex
	stopped bool
}

func newCoalescer(c *Core) *coalescer {
	inFlight := coalesceMaxInFlight
	if c.node.SyncWrites() {
		inFlight = coalesceMaxInFlightSync
	}
	w := &coalescer{
		c:   c,
		in:  make(chan pendingWrite, coalesceQueue),
		sem: make(chan struct{}, inFlight),
	}
	w.wg.Add(1)
	go w.run()
	return w
}

// submit admits a write against MaxMemory and queues it. It blocks while
// the queue is full (backpressure on the caller), or while the write waits
// for eviction to make room, until ctx ends or the layer stops. When it
// returns an error the write was not queued and done will not be called.
func (w *coalescer) submit(ctx context.Context, p pendingWrite) (err error) {
	if err := w.c.limits.checkRequestSize(len(p.w.data)); err != nil {
		return err
	}
	p.w.data = command.StampAuthRevision(p.w.data, p.w.authRev)
	if p.held, err = w.c.mem.admit(ctx, w.c.stopC, p.w.grow); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			w.c.mem.release(p.held)
		}
	}()
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.stopped {
		return raftnode.ErrStopped
	}
	select {
	case w.in <- p:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-w.c.stopC:
		return raftnode.ErrStopped
	}
}

// finish gives back p's memory reservation and answers its caller with the
// applied result r (and, for a read-modify-write, rmw), or with err.
func (w *coalescer) finish(p *pendingWrite, r engine.Result, rmw *fsm.RMWResult, err error) {
	w.c.mem.release(p.held)
	if err != nil {
		p.done(WriteResult{}, rmwError(err))
		return
	}
	res, err := p.w.result(r)
	if err != nil {
		p.done(WriteResult{}, err)
		return
	}
	if p.w.rmw && rmw != nil {
		res.RMW = *rmw
	}
	p.done(res, nil)
}

func (w *coalescer) run() {
	defer w.wg.Done()
	for {
		var first pendingWrite
		select {
		case first = <-w.in:
		case <-w.c.stopC:
			w.stop()
			return
		}
		// Take a proposal slot first: while every slot is busy, writes keep
		// queueing and leave together once one frees.
		select {
		case w.sem <- struct{}{}:
		case <-w.c.stopC:
			w.finish(&first, engine.Result{}, nil, raftnode.ErrStopped)
			w.stop()
			return
		}
		batch := []pendingWrite{first}
		size := len(first.w.data)
	drain:
		for len(batch) < coalesceMaxOps && size < coalesceMaxBytes {
			select {
			case p := <-w.in:
				batch = append(batch, p)
				size += len(p.w.data)
			default:
				break drain
			}
		}
		// Enqueue here, in the order the writes arrived, so entries reach
		// the log in that order; only the waiting happens concurrently.
		// The proposal is built behind the room the node needs for its
		// header, so it is not copied again.
		var data []byte
		if len(batch) > 1 {
			data = command.AppendMulti(make([]byte, raftnode.ProposalHeader, raftnode.ProposalHeader+size+size/8+16),
				batch, func(p pendingWrite) []byte { return p.w.data })
		} else {
			data = append(make([]byte, raftnode.ProposalHeader, raftnode.ProposalHeader+size), batch[0].w.data...)
		}
		w.wg.Add(1)
		err := w.c.node.EnqueueFunc(data, w.c.cfg.RequestTimeout, func(v any, err error) {
			w.complete(batch, v, err)
		})
		if err != nil {
			w.wg.Done()
			<-w.sem
			for i := range batch {
				w.finish(&batch[i], engine.Result{}, nil, err)
			}
		}
	}
}

// stop marks the coalescer stopped and fails every queued write.
func (w *coalescer) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	for {
		select {
		case p := <-w.in:
			w.finish(&p, engine.Result{}, nil, raftnode.ErrStopped)
		default:
			return
		}
	}
}

// complete hands each write of an entry its result: v, the state
// machine's, or err. It runs on the raft node's apply loop (or, for an
// error, wherever the node found it), so it only encodes and hands over.
func (w *coalescer) complete(batch []pendingWrite, v any, err error) {
	defer w.wg.Done()
	defer func() { <-w.sem }()
	r, _ := v.(fsm.Result)
	if len(batch) == 1 {
		if err == nil {
			err = r.Err
		}
		w.finish(&batch[0], r.Res, r.RMW, err)
		return
	}
	if err == nil && r.Err != nil {
		err = r.Err
	}
	if err == nil && len(r.Multi) != len(batch) {
		err = fmt.Errorf("core: %d results for %d coalesced writes", len(r.Multi), len(batch))
	}
	if err != nil {
		for i := range batch {
			w.finish(&batch[i], engine.Result{}, nil, err)
		}
		return
	}
	for i := range batch {
		w.finish(&batch[i], r.Multi[i].Res, r.Multi[i].RMW, r.Multi[i].Err)
	}
}
