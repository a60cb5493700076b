package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/kvdb/kvdb/internal/wire"
)

// binaryConn serves one binary-protocol connection.
//
// Goroutines: readLoop owns the wire.Reader and decodes requests in order;
// it answers cheap requests (PING, serializable reads, STATS) inline, hands
// linearizable reads to one goroutine per batch (one ReadIndex serves every
// read that arrived before it) and writes to the coalescer. writeLoop writes
// replies that complete asynchronously. Replies go into one buffer (out)
// under mu and reach the socket in as few writes as possible: the reader
// flushes before it would block on the socket, and asynchronous completions
// wake writeLoop, which writes everything that accumulated meanwhile.
type binaryConn struct {
	b   *binaryServer
	s   *Server
	c   net.Conn
	rd  *wire.Reader
	req wire.Request

	// slots holds one token per request in flight (MaxInFlight).
	slots chan struct{}

	mu    sync.Mutex
	out   []byte // replies not yet written; guarded by mu
	spare []byte // the other buffer, swapped with out by flush; guarded by wmu

	wmu sync.Mutex // serialises writes to c
	// writeDL is c's write deadline (guarded by wmu), readDL its read
	// deadline (the read loop's).
	writeDL, readDL connDeadline
	kick            chan struct{}

	closeOnce sync.Once
	closed    chan struct{}
	// ctx is cancelled by close and carries the connection's user after a
	// successful AUTH; base is the same without a user. Both are owned by
	// readLoop (goroutines it starts take a copy).
	ctx    context.Context
	base   context.Context
	cancel context.CancelFunc

	// reads are linearizable reads waiting for the next ReadIndex batch
	// (nil when none); owned by readLoop.
	reads *readBatch

	// writes counts this connection's writes not yet answered; a
	// transactional request waits for them so it runs after them.
	writes sync.WaitGroup

	// backlogClosed: the connection is being closed because its unwritten
	// replies passed maxReplyBacklog; guarded by mu.
	backlogClosed bool
	// txnID is the connection's open transaction ("" when none) and txnSeq
	// numbers the transactions BEGIN opened; both owned by readLoop.
	txnID  string
	txnSeq uint64

	// On an event loop (binary_evloop_linux.go): ev is the loop's part;
	// hello collects the client hello; quit ends the connection once the
	// replies are out, lingering after them with lingerAfter; finished
	// once it is forgotten.
	ev          *evConn
	budget      *loopBudget
	hello       []byte
	quit        bool
	lingerAfter bool
	finished    bool
	// partialSince: when the loop began waiting for the rest of a frame.
	partialSince time.Time
}

func newBinaryConn(b *binaryServer, c net.Conn) *binaryConn {
	ctx, cancel := context.WithCancel(context.Background())
	return &binaryConn{
		ctx:    ctx,
		base:   ctx,
		cancel: cancel,
		b:      b,
		s:      b.s,
		c:      c,
		slots:  make(chan struct{}, b.cfg.MaxInFlight),
		kick:   make(chan struct{}, 1),
		closed: make(chan struct{}),
	}
}

// close ends the connection; any goroutine may call it.
func (c *binaryConn) close() {
	if c.ev != nil {
		c.cancel()
		c.ev.requestClose()
		return
	}
	c.closeOnce.Do(func() {
		close(c.closed)
		c.cancel()
		c.c.Close()
	})
}

// send appends one encoded reply and releases the request's slot.
func (c *binaryConn) send(frame func([]byte) []byte) {
	c.mu.Lock()
	c.out = frame(c.out)
	over := c.backloggedLocked()
	c.mu.Unlock()
	c.release()
	if over {
		c.close()
	}
}

// maxReplyBacklog bounds the replies a connection holds that the socket has
// not taken: one reply of the largest frame, or many smaller ones. A
// variable for tests.
var maxReplyBacklog = wire.MaxResponseFrameSize

// backloggedLocked reports, with c.mu held after a reply was appended,
// whether the replies waiting to be written passed maxReplyBacklog: the
// client asks much faster than it reads (a slot is freed when its reply is
// buffered, so the in-flight cap alone does not bound them). They are
// dropped, and the caller closes the connection.
func (c *binaryConn) backloggedLocked() bool {
	if !c.backlogClosed && len(c.out) <= maxReplyBacklog {
		return false
	}
	c.out = nil
	c.backlogClosed = true
	return true
}

// release frees what an admitted request holds: its connection slot and
// its place in core's in-flight count (which shutdown drains and the
// node-wide cap bounds). Every request admitted is released exactly once,
// when its reply is buffered.
func (c *binaryConn) release() {
	<-c.slots
	c.s.core.Leave(true)
}

// wake tells writeLoop that replies completed off the read loop are
// buffered.
func (c *binaryConn) wake() {
	if c.ev != nil {
		c.ev.wake()
		return
	}
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// flush writes every buffered reply in one write; on an event loop it
// wakes the loop, which writes them.
func (c *binaryConn) flush() error {
	if c.ev != nil {
		c.ev.wake()
		return nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	buf := c.out
	c.out = c.spare[:0]
	c.mu.Unlock()
	var err error
	if len(buf) > 0 {
		c.writeDL.write(c.c, binaryWriteTimeout)
		_, err = c.c.Write(buf)
	}
	// Do not keep a huge buffer (a large RANGE reply) for the connection's
	// lifetime.
	if cap(buf) > 1<<20 {
		buf = nil
	}
	c.spare = buf[:0]
	if err != nil {
		c.close()
	}
	return err
}

func (c *binaryConn) writeLoop() {
	defer c.b.wg.Done()
	for {
		select {
		case <-c.kick:
			if c.flush() != nil {
				return
			}
		case <-c.closed:
			return
		}
	}
}

func (c *binaryConn) readLoop() {
	defer c.b.wg.Done()
	defer c.b.forget(c)
	defer c.close()
	defer c.rollbackOpen()
	if !c.handshake() {
		return
	}
	c.rd = wire.NewReader(c.c, binaryReadBufferSize, c.b.maxFrame())
	c.rd.SetBudget(frameBudget{c})
	defer c.rd.Close()
	for {
		if !c.rd.HasFrame() {
			// About to wait for the client: whatever is decoded must not
			// wait with us.
			c.dispatchReads()
			if c.flush() != nil {
				return
			}
			// Idle until a frame's first bytes arrive; from then on the
			// rest of it has ReadTimeout.
			if c.rd.Buffered() == 0 {
				c.readDL.read(c.c, c.b.cfg.IdleTimeout)
				if err := c.rd.Fill(); err != nil {
					c.fail(err)
					return
				}
			}
			if !c.rd.HasFrame() {
				c.readDL.read(c.c, c.b.cfg.ReadTimeout)
			}
		}
		f, err := c.rd.Next()
		if err == nil && f.Status != wire.StatusOK {
			err = fmt.Errorf("%w: status byte %d in a request", wire.ErrRequestStatus, uint8(f.Status))
		}
		if err != nil {
			c.fail(err)
			return
		}
		select {
		case c.slots <- struct{}{}:
		default:
			// At the in-flight cap: stop reading until a reply frees a slot.
			c.dispatchReads()
			if c.flush() != nil {
				return
			}
			select {
			case c.slots <- struct{}{}:
			case <-c.closed:
				return
			}
		}
		if !c.handle(f) {
			return
		}
	}
}

// handshake reads the client hello and answers it. A wrong version gets a
// hello with HelloUnsupportedVersion, then the connection closes. The
// hello's reserved bytes are ignored (docs/protocol.md §1).
func (c *binaryConn) handshake() bool {
	var hello [wire.ClientHelloSize]byte
	_ = c.c.SetReadDeadline(time.Now().Add(c.b.cfg.ReadTimeout))
	if _, err := io.ReadFull(c.c, hello[:]); err != nil {
		return false
	}
	sh := c.b.hello()
	_, err := wire.ParseClientHello(hello[:])
	if err != nil {
		sh.Status = wire.HelloUnsupportedVersion
	}
	_ = c.c.SetWriteDeadline(time.Now().Add(binaryWriteTimeout))
	if _, werr := c.c.Write(wire.AppendServerHello(nil, sh)); werr != nil {
		return false
	}
	return err == nil
}

// fail ends the connection after a read error. A framing violation gets an
// ERROR frame (op ERROR, request id 0: it is about the connection) with
// INVALID_ARGUMENT, or RESOURCE_EXHAUSTED for a frame over the limit or no
// room to buffer it, before the close; a closed or timed-out socket does not.
func (c *binaryConn) fail(err error) {
	st, ok := framingStatus(err)
	if !ok {
		// EOF, reset, deadline: nothing to say, nobody to say it to.
		c.flush()
		return
	}
	c.protocolError(wire.OpError, 0, st, err)
}

// framingStatus is the status a read error is answered with: false when it
// is no framing violation (the stream ended or failed).
func framingStatus(err error) (wire.Status, bool) {
	switch {
	case errors.Is(err, wire.ErrFrameTooLarge), errors.Is(err, errRequestBufferFull):
		return wire.StatusResourceExhausted, true
	case errors.Is(err, wire.ErrFrameTooShort), errors.Is(err, wire.ErrReservedBits), errors.Is(err, wire.ErrRequestStatus):
		return wire.StatusInvalidArgument, true
	}
	return 0, false
}

func (c *binaryConn) protocolError(op wire.Opcode, id uint64, st wire.Status, err error) {
	c.dispatchReads()
	c.mu.Lock()
	c.out = wire.AppendError(c.out, op, id, st, err.Error())
	c.mu.Unlock()
	if c.ev != nil {
		c.quit, c.lingerAfter = true, true // the loop writes it and lingers
		return
	}
	if c.flush() == nil {
		lingerClose(c.c)
	}
}

// errorReply returns a frame builder for an error reply to op/id.
func errorReply(op wire.Opcode, id uint64, err error) func([]byte) []byte {
	st, msg := WireStatus(err), errorMessage(err)
	return func(b []byte) []byte { return wire.AppendError(b, op, id, st, msg) }
}

// handle serves one frame. It returns false when the connection must close.
func (c *binaryConn) handle(f wire.Frame) bool {
	if err := c.s.core.Enter(true); err != nil {
		// Over the node-wide cap, or draining: answer at once, without
		// decoding.
		st, msg := WireStatus(err), err.Error()
		c.mu.Lock()
		c.out = wire.AppendError(c.out, f.Op, f.ID, st, msg)
		c.mu.Unlock()
		<-c.slots
		return true
	}
	if !f.Op.Valid() {
		c.send(func(b []byte) []byte {
			return wire.AppendError(b, f.Op, f.ID, wire.StatusUnimplemented, fmt.Sprintf("unknown opcode 0x%02x", uint8(f.Op)))
		})
		return true
	}
	if bad := f.Flags &^ f.Op.RequestFlags(); bad != 0 {
		c.send(func(b []byte) []byte {
			return wire.AppendError(b, f.Op, f.ID, wire.StatusInvalidArgument, fmt.Sprintf("flag bits 0x%02x are not defined for %s", bad, f.Op))
		})
		return true
	}
	if err := wire.DecodeRequest(f, &c.req); err != nil {
		c.release()
		c.protocolError(f.Op, f.ID, wire.StatusInvalidArgument, fmt.Errorf("malformed %s request: %w", f.Op, err))
		return false
	}
	c.serve(&c.req)
	return true
}
