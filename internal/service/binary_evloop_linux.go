//go:build linux

package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kvdb/kvdb/internal/wire"
)

// A binary-protocol connection on an event loop (evloop_linux.go). The
// loop reads the hello and the frames, answers PING and the reads it may
// serve from the node's own state inline, queues the other linearizable
// reads for one ReadIndex (answered by a goroutine, as with a goroutine per
// connection), hands writes to core's coalescer, and writes the replies;
// completions wake it. Transactions, AUTH and STATS, which may wait, run on
// a goroutine of their own (evDetach) until no complete frame is buffered.

// evServe runs on the loop when the socket has news or the connection was
// woken.
func (c *binaryConn) evServe() {
	ec := c.ev
	if c.rd == nil && !c.evHello() {
		return
	}
	if !c.evFlush() {
		return
	}
	for !c.quit {
		if c.rd.NeedsInput() && !ec.readable {
			break
		}
		if len(c.slots) == cap(c.slots) {
			break // at the in-flight cap: a reply's completion wakes the loop
		}
		f, err := c.rd.Next()
		if errors.Is(err, errWouldBlock) {
			break
		}
		if err == nil && f.Status != wire.StatusOK {
			err = fmt.Errorf("%w: status byte %d in a request", wire.ErrRequestStatus, uint8(f.Status))
		}
		if err != nil {
			c.evFail(err)
			break
		}
		c.partialSince = time.Time{}
		c.slots <- struct{}{}
		if mayWait(f) {
			c.evDetach(f)
			return
		}
		if !c.handle(f) {
			break
		}
		if c.outLen() >= evFlushAt && !c.evFlush() {
			return
		}
	}
	c.dispatchReads()
	// A frame begun and not whole has ReadTimeout from now to complete.
	if c.rd.Buffered() > 0 && c.partialSince.IsZero() && !c.rd.HasFrame() {
		c.partialSince = time.Now()
	}
	if !c.evFlush() {
		return
	}
	if c.quit {
		if c.lingerAfter {
			ec.startLinger()
		} else {
			c.evClose()
		}
	}
}

// mayWait reports whether serving f may block: it then runs off the loop.
func mayWait(f wire.Frame) bool {
	switch f.Op {
	case wire.OpBegin, wire.OpCommit, wire.OpRollback, wire.OpTxn, wire.OpAuth, wire.OpStats:
		return true
	case wire.OpGet, wire.OpRange, wire.OpPut, wire.OpDelete:
		return f.Flags&wire.FlagInTxn != 0
	}
	return false
}

// evHello reads the client hello and answers it (handshake).
func (c *binaryConn) evHello() bool {
	for len(c.hello) < wire.ClientHelloSize {
		if !c.ev.readable {
			return false
		}
		var buf [wire.ClientHelloSize]byte
		n, err := c.ev.Read(buf[:wire.ClientHelloSize-len(c.hello)])
		if errors.Is(err, errWouldBlock) {
			return false
		}
		if err != nil {
			c.evClose()
			return false
		}
		c.hello = append(c.hello, buf[:n]...)
	}
	sh := c.b.hello()
	_, err := wire.ParseClientHello(c.hello)
	if err != nil {
		sh.Status = wire.HelloUnsupportedVersion
		c.quit = true
	}
	c.mu.Lock()
	c.out = wire.AppendServerHello(c.out, sh)
	c.mu.Unlock()
	c.rd = wire.NewReader(c.ev, binaryReadBufferSize, c.b.maxFrame())
	c.budget = &loopBudget{c: c}
	c.rd.SetBudget(c.budget)
	return true
}

// evDetach serves f, and then every complete frame still buffered, on a
// goroutine of its own, and gives the connection back to the loop.
func (c *binaryConn) evDetach(f wire.Frame) {
	c.ev.detached.Store(true)
	c.ev.handedOff()
	go func() {
		ok := c.handle(f)
		for ok && !c.quit && !c.ev.closeReq.Load() && c.rd.HasFrame() && len(c.slots) < cap(c.slots) {
			f, err := c.rd.Next()
			if err != nil || f.Status != wire.StatusOK {
				break // the loop reads it again and reports it
			}
			c.slots <- struct{}{}
			ok = c.handle(f)
		}
		c.dispatchReads()
		c.ev.detached.Store(false)
		c.ev.wake()
	}()
}

func (c *binaryConn) outLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.out)
}

// evFlush writes the buffered replies: false when the connection closed or
// the socket did not take all of them (the loop goes on at the next output
// edge). Replies that complete meanwhile wait for the next flush.
func (c *binaryConn) evFlush() bool {
	if len(c.spare) == 0 {
		c.mu.Lock()
		c.spare, c.out = c.out, c.spare[:0]
		c.mu.Unlock()
	}
	return c.ev.flushOrClose(&c.spare)
}

// evFail ends the connection after a read error, as fail does.
func (c *binaryConn) evFail(err error) {
	st, ok := framingStatus(err)
	if !ok {
		c.quit = true // EOF, reset: answer what is done and close
		return
	}
	c.protocolError(wire.OpError, 0, st, err)
}

// evTick closes a connection past the hello, frame or idle timeout.
func (c *binaryConn) evTick(now time.Time) {
	ec := c.ev
	switch {
	case c.rd == nil:
		if now.Sub(ec.lastRead) > c.b.cfg.ReadTimeout {
			c.evClose()
		}
	case c.rd.Buffered() > 0:
		if !c.partialSince.IsZero() && now.Sub(c.partialSince) > c.b.cfg.ReadTimeout && !c.budget.isWaiting() {
			c.evClose()
		}
	case len(c.slots) == 0 && now.Sub(ec.lastRead) > c.b.cfg.IdleTimeout:
		c.evClose()
	}
}

// evClose closes the socket and finishes the connection: an open
// transaction is rolled back off the loop.
func (c *binaryConn) evClose() {
	c.ev.close()
	if c.finished {
		return
	}
	c.finished = true
	c.closeOnce.Do(func() {
		close(c.closed)
		c.cancel()
	})
	if c.rd != nil {
		c.rd.Close()
		c.budget.close()
	}
	c.c.Close()
	c.b.forget(c)
	go func() {
		defer c.b.wg.Done()
		c.rollbackOpen()
	}()
}

// loopBudget is frameBudget for a connection on a loop: it never waits on
// the loop. When the budget has no room, a goroutine waits for it (at most
// ReadTimeout) and wakes the connection; the reader's next attempt takes
// what it got.
type loopBudget struct {
	c       *binaryConn
	mu      sync.Mutex
	granted int
	waiting bool
	closed  bool
	err     error
}

func (lb *loopBudget) Acquire(n int) error {
	b := lb.c.b
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if err := lb.err; err != nil {
		lb.err = nil
		return err
	}
	if lb.waiting {
		return errWouldBlock
	}
	if lb.granted >= n {
		if extra := lb.granted - n; extra > 0 {
			b.buffers.Release(int64(extra))
		}
		lb.granted = 0
		return nil
	}
	if lb.granted > 0 {
		b.buffers.Release(int64(lb.granted))
		lb.granted = 0
	}
	if b.buffers.TryAcquire(int64(n)) {
		return nil
	}
	lb.waiting = true
	lb.c.ev.handedOff()
	go func() {
		ctx, cancel := context.WithTimeout(lb.c.ctx, b.cfg.ReadTimeout)
		err := b.buffers.Acquire(ctx, int64(n))
		cancel()
		lb.mu.Lock()
		lb.waiting = false
		switch {
		case err != nil:
			lb.err = errRequestBufferFull
		case lb.closed:
			b.buffers.Release(int64(n))
		default:
			lb.granted = n
		}
		lb.mu.Unlock()
		lb.c.ev.wake()
	}()
	return errWouldBlock
}

func (lb *loopBudget) Release(n int) { lb.c.b.buffers.Release(int64(n)) }

func (lb *loopBudget) isWaiting() bool {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.waiting
}

// close gives back what a waiter got for a connection that went away.
func (lb *loopBudget) close() {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	lb.closed = true
	if lb.granted > 0 {
		lb.c.b.buffers.Release(int64(lb.granted))
		lb.granted = 0
	}
}
