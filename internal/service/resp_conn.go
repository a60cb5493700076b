package service

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvdb/kvdb/internal/core"
	"github.com/kvdb/kvdb/internal/resp"
)

// respConn serves one Redis-protocol connection with one goroutine.
//
// Replies must go out in command order. The loop parses every command
// already buffered (a pipeline) before it waits for the client: writes that
// need no answer but success (SET, MSET, DEL) are submitted to core's
// coalescer at once and answered together, so a pipeline of writes shares
// raft entries; any other command first waits for those writes (settle),
// so it sees them and its reply follows theirs. Reads share one ReadIndex
// per pipeline: every command parsed after it was already buffered when it
// began. Before the loop waits for input it settles and flushes.
type respConn struct {
	r      *respServer
	s      *Server
	c      net.Conn
	rd     *resp.Reader
	id     uint64
	inline bool
	start  time.Time

	ctx    context.Context // carries the user after AUTH
	base   context.Context
	cancel context.CancelFunc
	user   string

	out []byte

	// The socket's deadlines, re-armed only when they fall behind.
	readDL, writeDL connDeadline
	// partialSince: when the connection began waiting for the rest of a
	// command whose first bytes arrived (zero: none begun). The command
	// must be whole within ReadTimeout of it, however slowly its bytes
	// come; a connection idle between commands is not timed by it.
	partialSince time.Time

	// pending writes, answered in order by settle.
	slots   []*respSlot
	npend   int
	waiting atomic.Int64
	settled chan struct{}

	// fresh: a ReadIndex was done since the last read from the socket, so
	// the reads parsed since are linearizable without another.
	fresh        bool
	serializable bool // READONLY
	resp3        bool

	multi   *respMulti
	watches map[string]int64

	// submitted: the command being dispatched went to the coalescer, whose
	// completion leaves and observes it.
	submitted bool
	// op, when a handler sets it, is the operation recorded instead of
	// the command's (SET with options is an EXECUTE).
	op core.Op

	mu   sync.Mutex // guards what CLIENT LIST reads of other connections
	name string
	// shownUser and shownResp3 are user and resp3 as CLIENT LIST shows
	// them (publish).
	shownUser  string
	shownResp3 bool

	closeOnce sync.Once
	quit      bool

	// On an event loop (resp_evloop_linux.go): ev is the loop's part;
	// lingerAfter: linger once the replies are out; finished once it is
	// forgotten.
	ev          *evConn
	lingerAfter bool
	finished    bool
}

// respSlot is one pending write's place in the reply order. done is made
// once per slot and reused.
type respSlot struct {
	// kind is the reply: '+' OK, ':' the deleted count, 'i' RMW.N, 'b'
	// RMW.N as 0 or 1, 'f' RMW.Value as a bulk string, 'e' the error
	// line msg (a command refused after writes still pending).
	kind  byte
	msg   string
	val   []byte
	start time.Time
	op    core.Op
	n     int64
	err   error
	done  func(core.WriteResult, error)
}

// newRESPConn serves c, on an event loop when one takes it.
func newRESPConn(r *respServer, c net.Conn, inline bool) *respConn {
	ctx, cancel := respContext()
	rc := &respConn{
		r: r, s: r.s, c: c, inline: inline, id: r.nextID.Add(1), start: time.Now(),
		ctx: ctx, base: ctx, cancel: cancel,
		settled: make(chan struct{}, 1),
	}
	var src io.Reader = c
	if rc.ev = r.s.loopConn(c, rc, respWriteTimeout); rc.ev != nil {
		src = rc.ev
	}
	rc.rd = resp.NewReader(src, respReadBufferSize, r.limits(inline))
	return rc
}

// close ends the connection; any goroutine may call it.
func (c *respConn) close() {
	c.closeOnce.Do(func() {
		c.cancel()
		if c.ev != nil {
			c.ev.requestClose()
			return
		}
		c.c.Close()
	})
}

func (c *respConn) serve() {
	defer c.r.wg.Done()
	defer c.r.forget(c)
	defer c.close()
	defer c.settle()
	for {
		args, ok, err := c.rd.Next()
		if err != nil {
			// Malformed input: say so, as Redis does, and close.
			c.settle()
			c.out = resp.AppendError(c.out, "ERR "+err.Error())
			if c.flush() == nil {
				lingerClose(c.c)
			}
			return
		}
		if !ok {
			c.settle()
			if c.flush() != nil {
				return
			}
			if c.rd.Buffered() == 0 {
				c.partialSince = time.Time{}
				c.readDL.read(c.c, c.r.cfg.IdleTimeout)
			} else if c.partialSince.IsZero() {
				// A command begun: the deadline set now stands until it
				// is whole, whatever arrives meanwhile.
				c.partialSince = time.Now()
				c.readDL.read(c.c, c.r.cfg.ReadTimeout)
			}
			c.fresh = false
			if err := c.rd.Fill(); err != nil {
				if errors.Is(err, resp.ErrProtocol) {
					c.out = resp.AppendError(c.out, "ERR "+err.Error())
					if c.flush() == nil {
						lingerClose(c.c)
					}
				}
				return
			}
			continue
		}
		c.partialSince = time.Time{}
		c.dispatch(args)
		if c.quit {
			c.settle()
			_ = c.flush()
			return
		}
		if len(c.out) > 256<<10 {
			if c.flush() != nil {
				return
			}
		}
	}
}

// flush writes the buffered replies.
func (c *respConn) flush() error {
	if len(c.out) == 0 {
		return nil
	}
	c.writeDL.write(c.c, respWriteTimeout)
	_, err := c.c.Write(c.out)
	if cap(c.out) > 1<<20 {
		c.out = nil
	} else {
		c.out = c.out[:0]
	}
	return err
}

// slot takes the next place in the reply order.
func (c *respConn) slot() *respSlot {
	if c.npend == respMaxPending {
		c.settle()
	}
	if c.npend == len(c.slots) {
		sl := &respSlot{}
		sl.done = func(r core.WriteResult, err error) {
			sl.n, sl.err = r.Deleted, err
			switch sl.kind {
			case ':':
			default:
				sl.n, sl.val = r.RMW.N, r.RMW.Value
			}
			c.s.core.Leave(true)
			c.s.core.Observe(core.RESP, sl.op, sl.start)
			if c.waiting.Add(-1) == 0 {
				select {
				case c.settled <- struct{}{}:
				default:
				}
				if c.ev != nil {
					c.ev.wake()
				}
			}
		}
		c.slots = append(c.slots, sl)
	}
	sl := c.slots[c.npend]
	c.npend++
	return sl
}

// submit queues a prepared write, answered by settle in order.
func (c *respConn) submit(w core.Write, kind byte, start time.Time) {
	sl := c.slot()
	c.submitted = true
	sl.kind, sl.start, sl.op, sl.n, sl.err = kind, start, w.Op(), 0, nil
	c.waiting.Add(1)
	c.ev.handedOff()
	c.s.core.Submit(c.ctx, w, sl.done)
}

// settle waits for the pending writes and appends their replies.
func (c *respConn) settle() {
	if c.npend == 0 {
		return
	}
	for c.waiting.Load() != 0 {
		<-c.settled
	}
	for _, sl := range c.slots[:c.npend] {
		switch {
		case sl.kind == 'e':
			c.out = resp.AppendError(c.out, sl.msg)
			sl.msg = ""
		case sl.err != nil:
			c.out = resp.AppendError(c.out, respError(sl.err))
		case sl.kind == ':' || sl.kind == 'i':
			c.out = resp.AppendInt(c.out, sl.n)
		case sl.kind == 'b':
			c.out = resp.AppendInt(c.out, min(sl.n, 1))
		case sl.kind == 'f':
			c.out = resp.AppendBulk(c.out, sl.val)
		default:
			c.out = resp.AppendSimple(c.out, "OK")
		}
		sl.err, sl.val = nil, nil
	}
	c.npend = 0
}

// waitRead makes the reads that follow linearizable (unless READONLY),
// sharing one ReadIndex among the commands of a pipeline.
func (c *respConn) waitRead() error {
	c.settle()
	if c.serializable || c.fresh {
		return nil
	}
	if err := c.s.core.WaitRead(c.ctx, false); err != nil {
		return err
	}
	c.fresh = true
	return nil
}

// Reply helpers.

func (c *respConn) ok()                 { c.out = resp.AppendSimple(c.out, "OK") }
func (c *respConn) simple(s string)     { c.out = resp.AppendSimple(c.out, s) }
func (c *respConn) int(n int64)         { c.out = resp.AppendInt(c.out, n) }
func (c *respConn) bulk(b []byte)       { c.out = resp.AppendBulk(c.out, b) }
func (c *respConn) bulkString(s string) { c.out = resp.AppendBulkString(c.out, s) }
func (c *respConn) null()               { c.out = resp.AppendNull(c.out, c.resp3) }
func (c *respConn) array(n int)         { c.out = resp.AppendArray(c.out, n) }
func (c *respConn) fail(err error)      { c.errorLine(respError(err)) }

// errorLine answers an error. After writes still pending (a write command
// refused in a pipeline of writes) it takes its place behind their
// replies without waiting for them.
func (c *respConn) errorLine(msg string) {
	if c.npend == 0 {
		c.out = resp.AppendError(c.out, msg)
		return
	}
	sl := c.slot()
	sl.kind, sl.msg = 'e', msg
}
func (c *respConn) bool(b bool) {
	if b {
		c.int(1)
	} else {
		c.int(0)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
