//go:build linux

package service

import (
	"errors"
	"time"

	"github.com/kvdb/kvdb/internal/resp"
)

// A Redis-protocol connection on an event loop (evloop_linux.go). The loop
// answers what it can at once: reads that the node may serve from its own
// state (a lone voter's leader, READONLY, or a read barrier already done
// for this input) and plain writes, which go to core's coalescer and wake
// the connection when they complete. Any other command, or a read that
// would wait, is handed to a goroutine (detach) that runs the commands
// still buffered as a goroutine-per-connection server does, and gives the
// connection back when the buffer holds no complete command.

// evServe runs on the loop when the socket has news or the connection was
// woken.
func (c *respConn) evServe() {
	ec := c.ev
	if !c.evFlush() {
		return
	}
	for !c.quit {
		args, ok, err := c.rd.Next()
		if err != nil {
			c.evProtocolError(err)
			break
		}
		if ok {
			c.partialSince = time.Time{}
			cmd := lookupCommand(args[0])
			if !c.canInline(cmd, args) {
				c.detach(cmd, args)
				return
			}
			c.run(cmd, args)
			if len(c.out) >= evFlushAt && !c.evFlush() {
				return
			}
			continue
		}
		if !ec.readable {
			break
		}
		switch err := c.rd.Fill(); {
		case err == nil:
			c.fresh = false
		case errors.Is(err, errWouldBlock):
		case errors.Is(err, resp.ErrProtocol):
			c.evProtocolError(err)
		default: // the client went away
			c.evClose()
			return
		}
	}
	// A command begun and not whole has ReadTimeout from now to complete
	// (evTick), however slowly the rest of it arrives.
	if !c.quit && c.rd.Buffered() > 0 && c.partialSince.IsZero() {
		c.partialSince = time.Now()
	}
	if !c.evFlush() {
		return
	}
	if c.quit && c.npend == 0 {
		if c.lingerAfter {
			ec.startLinger()
		} else {
			c.evClose()
		}
	}
}

// canInline reports whether the loop may run a command itself: it must not
// wait for anything.
func (c *respConn) canInline(cmd *respCommand, args [][]byte) bool {
	if cmd == nil || !cmd.inline || c.multi != nil {
		return false
	}
	if !cmd.arityOK(len(args)) {
		return false
	}
	if cmd.write {
		// A plain SET; SET with options may run a transaction.
		return c.npend < respMaxPending && (cmd.name != "set" || len(args) == 3)
	}
	return c.waiting.Load() == 0 && (c.serializable || c.fresh || c.s.core.ReadableNow())
}

// detach runs args, then every complete command still buffered, on a
// goroutine of its own, and gives the connection back to the loop.
func (c *respConn) detach(cmd *respCommand, args [][]byte) {
	c.ev.detached.Store(true)
	c.ev.handedOff()
	go func() {
		c.run(cmd, args)
		for !c.quit && len(c.out) < evFlushAt && !c.ev.closeReq.Load() {
			args, ok, err := c.rd.Next()
			if err != nil || !ok {
				break // the loop reports a malformed command
			}
			c.dispatch(args)
		}
		c.settle()
		c.ev.detached.Store(false)
		c.ev.wake()
	}()
}

// evFlush appends the replies of completed writes and writes the output:
// false when the connection closed or the socket did not take all of it
// (the loop goes on at the next output edge).
func (c *respConn) evFlush() bool {
	if c.npend > 0 && c.waiting.Load() == 0 {
		c.settle()
	}
	return c.ev.flushOrClose(&c.out)
}

// evProtocolError answers a malformed command after the replies before it
// and has the connection close, lingering, as serve does.
func (c *respConn) evProtocolError(err error) {
	c.errorLine("ERR " + err.Error())
	c.quit, c.lingerAfter = true, true
}

// evTick closes a connection past the read or idle timeout: a command
// begun and not whole ReadTimeout after its first bytes, or no input for
// IdleTimeout between commands.
func (c *respConn) evTick(now time.Time) {
	switch {
	case c.npend > 0:
	case c.rd.Buffered() > 0:
		if !c.partialSince.IsZero() && now.Sub(c.partialSince) > c.r.cfg.ReadTimeout {
			c.evClose()
		}
	case c.r.cfg.IdleTimeout > 0 && now.Sub(c.ev.lastRead) > c.r.cfg.IdleTimeout:
		c.evClose()
	}
}

// evClose closes the socket; the connection is done once its pending
// writes completed (the last completion wakes it, and the loop comes back
// here).
func (c *respConn) evClose() {
	c.ev.close()
	c.cancel()
	if c.waiting.Load() != 0 || c.finished {
		return
	}
	c.finished = true
	c.c.Close()
	c.r.forget(c)
	c.r.wg.Done()
}
