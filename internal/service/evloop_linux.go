//go:build linux

package service

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The event loops: plain-TCP binary and Redis-protocol connections are
// served from an epoll instance by one goroutine, as Redis serves its
// clients, instead of by goroutines of their own. A request that arrives
// alone on a connection then costs one read and one write system call and
// no goroutine switch: with a goroutine per connection every request also
// parked and woke its goroutine and read the socket once more to find it
// empty, and on a small machine the scheduler's work was as much as the
// request's. What can wait (a write's commit, a read barrier, a
// transaction) never blocks the loop: writes complete through callbacks
// that wake the connection, and whatever else may wait is handed to a
// goroutine of its own for as long as it runs (respConn.detach,
// binaryConn.evDetach).
//
// Sockets are registered edge-triggered for input and output once and
// never modified: a connection that may hold unread bytes is marked
// readable and read when its handler is ready for more; output that the
// socket does not take at once waits for the next output edge. The loop
// goroutine waits in the runtime's poller (the epoll fd is registered
// there), so it holds no processor while idle, and it yields after a
// batch that handed work to another goroutine, so that the work runs at
// once.

// evHandler is a connection served by a loop. Its methods run on the loop
// goroutine, never while a goroutine holds the connection (detached), and
// not for what the loop does itself: closing on request, lingering after
// an error reply, the write timeout.
type evHandler interface {
	// evServe does what the connection can do without blocking: read,
	// answer, write.
	evServe()
	// evTick runs every evTickInterval: the protocol's own timeouts.
	evTick(now time.Time)
	// evClose closes the connection (evConn.close) and lets it go once
	// nothing of it is in flight; called again, it checks again.
	evClose()
}

const evTickInterval = 250 * time.Millisecond

// evFlushAt is how much output a connection collects before the loop
// writes it even though more requests are buffered.
const evFlushAt = 64 << 10

// errWouldBlock is what evConn's Read returns when the socket is empty.
var errWouldBlock = errors.New("no input buffered on the socket")

// evConn is the loop's part of a connection.
type evConn struct {
	loop *evLoop
	fd   int
	h    evHandler
	// prefix holds bytes read before the loop took the socket (protocol
	// detection); Read returns them first.
	prefix []byte
	// readable: the socket may hold unread bytes; lastRead: when bytes
	// last came (loop only).
	readable bool
	lastRead time.Time
	// outOff: the bytes of the output already written; outSince: when
	// the socket last refused more (zero: nothing waits).
	outOff   int
	outSince time.Time
	// writeTimeout closes the connection when the socket takes no output
	// for this long.
	writeTimeout time.Duration
	// lingerUntil (zero: not lingering) and lingered: see startLinger.
	lingerUntil time.Time
	lingered    int
	// detached: a goroutine holds the connection and the loop leaves it
	// alone until it is woken; closeReq: close it (requestClose).
	detached atomic.Bool
	closeReq atomic.Bool
	queued   atomic.Bool
	added    bool
	closed   bool
}

// Read reads what the socket holds without waiting: errWouldBlock when it
// holds nothing, io.EOF at its end. A short read leaves the connection
// unreadable until the next input edge.
func (ec *evConn) Read(p []byte) (int, error) {
	if len(ec.prefix) > 0 {
		n := copy(p, ec.prefix)
		ec.prefix = ec.prefix[n:]
		if len(ec.prefix) == 0 {
			ec.prefix = nil
		}
		return n, nil
	}
	for {
		n, err := unix.Read(ec.fd, p)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			ec.readable = false
			return 0, errWouldBlock
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		if n < len(p) {
			ec.readable = false
		}
		ec.lastRead = ec.loop.now()
		return n, nil
	}
}

// flush writes *out as far as the socket takes it: done when all of it
// went (and *out is emptied for reuse).
func (ec *evConn) flush(out *[]byte) (done bool, err error) {
	for ec.outOff < len(*out) {
		n, err := unix.Write(ec.fd, (*out)[ec.outOff:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if ec.outSince.IsZero() {
				ec.outSince = time.Now()
			}
			return false, nil
		case err != nil:
			return false, err
		}
		ec.outOff += n
	}
	ec.outOff, ec.outSince = 0, time.Time{}
	if cap(*out) > 1<<20 {
		*out = nil
	} else {
		*out = (*out)[:0]
	}
	return true, nil
}

// flushOrClose is flush for a handler's evFlush: false when the socket did
// not take all of out or failed, and then the connection is closed.
func (ec *evConn) flushOrClose(out *[]byte) bool {
	done, err := ec.flush(out)
	if err != nil {
		ec.h.evClose()
		return false
	}
	return done
}

// startLinger half-closes the socket after an error reply and has the
// connection read what the client still sends for a while (lingerClose),
// so that the reply is not lost to a reset.
func (ec *evConn) startLinger() {
	_ = unix.Shutdown(ec.fd, unix.SHUT_WR)
	ec.lingerUntil = time.Now().Add(lingerTimeout)
}

func (ec *evConn) lingering() bool { return !ec.lingerUntil.IsZero() }

// linger discards what arrived: done when the connection should close
// (the client closed, lingerBytes arrived, or lingerTimeout passed).
func (ec *evConn) linger(now time.Time) (done bool) {
	if now.After(ec.lingerUntil) {
		return true
	}
	var buf [4096]byte
	for ec.readable {
		n, err := ec.Read(buf[:])
		if err != nil {
			return !errors.Is(err, errWouldBlock)
		}
		if ec.lingered += n; ec.lingered >= lingerBytes {
			return true
		}
	}
	return false
}

// requestClose has the loop close the connection; any goroutine may call
// it.
func (ec *evConn) requestClose() {
	ec.closeReq.Store(true)
	ec.wake()
}

// handedOff tells the loop that serving the connection readied another
// goroutine (a write handed to the coalescer, a read round, a detached
// request), which should run before the loop serves the next batch. A
// no-op for a connection not on a loop (nil).
func (ec *evConn) handedOff() {
	if ec != nil {
		ec.loop.handed.Store(true)
	}
}

// wake has the loop serve the connection soon; any goroutine may call it.
func (ec *evConn) wake() {
	if ec.queued.Swap(true) {
		return
	}
	ec.loop.enqueue(ec)
}

// release closes the socket of a connection never given to its loop.
func (ec *evConn) release() {
	ec.closed = true
	_ = unix.Close(ec.fd)
}

// close closes the socket (loop only).
func (ec *evConn) close() {
	if ec.closed {
		return
	}
	ec.closed = true
	if ec.added {
		delete(ec.loop.conns, int32(ec.fd))
	}
	_ = unix.Close(ec.fd)
}

// serve has the handler do what it can, unless a goroutine holds the
// connection; closing on request and lingering are the loop's own.
func (ec *evConn) serve() {
	switch {
	case ec.detached.Load():
	case ec.closed || ec.closeReq.Load():
		ec.h.evClose()
	case ec.lingering():
		if ec.linger(time.Now()) {
			ec.h.evClose()
		}
	default:
		ec.h.evServe()
		if !ec.closed && ec.lingering() && ec.linger(time.Now()) {
			ec.h.evClose()
		}
	}
}

// tick closes a connection past the write timeout or done lingering, and
// lets the handler look at its own timeouts.
func (ec *evConn) tick(now time.Time) {
	switch {
	case ec.detached.Load():
	case ec.lingering():
		if ec.linger(now) {
			ec.h.evClose()
		}
	case !ec.outSince.IsZero() && now.Sub(ec.outSince) > ec.writeTimeout:
		ec.h.evClose()
	default:
		ec.h.evTick(now)
	}
}

// evLoop is one epoll instance and the goroutine serving it.
type evLoop struct {
	ep, efd int
	// epf is ep in the runtime's poller: the loop goroutine waits there,
	// parked like any goroutine waiting for a socket, rather than in
	// epoll_wait, where it would hold on to its processor.
	epf    *os.File
	mu     sync.Mutex
	queue  []*evConn // woken and new connections
	spare  []*evConn
	signal bool
	stop   bool
	conns  map[int32]*evConn // loop only
	done   chan struct{}
	// handed: a connection handed work to another goroutine (readied
	// it) since the loop last yielded; see handedOff.
	handed atomic.Bool
	// clock is the time (unix nanoseconds) the loop last woke: the
	// connections' idle clock, read once per wake-up rather than once per
	// read (see now).
	clock atomic.Int64
}

// now is when the loop last woke: precise enough for idle and read
// timeouts, which are seconds long.
func (l *evLoop) now() time.Time { return time.Unix(0, l.clock.Load()) }

func newEvLoop() (*evLoop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, err
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}); err != nil {
		unix.Close(ep)
		unix.Close(efd)
		return nil, err
	}
	if err := unix.SetNonblock(ep, true); err != nil {
		unix.Close(ep)
		unix.Close(efd)
		return nil, err
	}
	l := &evLoop{ep: ep, efd: efd, epf: os.NewFile(uintptr(ep), "epoll"), conns: make(map[int32]*evConn), done: make(chan struct{})}
	l.clock.Store(time.Now().UnixNano())
	go l.run()
	return l, nil
}

func (l *evLoop) enqueue(ec *evConn) {
	l.mu.Lock()
	l.queue = append(l.queue, ec)
	signal := !l.signal
	l.signal = true
	l.mu.Unlock()
	if signal {
		l.notify()
	}
}

func (l *evLoop) notify() {
	var one = [8]byte{1}
	for {
		_, err := unix.Write(l.efd, one[:])
		if err != unix.EINTR {
			return
		}
	}
}

// shutdown ends the loop once its connections are closed.
func (l *evLoop) shutdown() {
	l.mu.Lock()
	l.stop = true
	l.mu.Unlock()
	l.notify()
	<-l.done
}

// wait returns the events ready, waiting for some at most until the
// read deadline set on epf (the next tick).
func (l *evLoop) wait(raw syscall.RawConn, events []unix.EpollEvent) int {
	n := 0
	err := raw.Read(func(uintptr) bool {
		var err error
		n, err = unix.EpollWait(l.ep, events, 0)
		return n > 0 || (err != nil && err != unix.EINTR && err != unix.EAGAIN)
	})
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		// Not expected while the loop owns ep; do not spin on it.
		time.Sleep(time.Millisecond)
	}
	return max(n, 0)
}

func (l *evLoop) run() {
	defer close(l.done)
	defer unix.Close(l.efd)
	defer l.epf.Close()
	raw, err := l.epf.SyscallConn()
	if err != nil {
		panic("epoll fd: " + err.Error()) // os.NewFile's files always have one
	}
	events := make([]unix.EpollEvent, 256)
	var buf [8]byte
	lastTick := time.Now()
	_ = l.epf.SetReadDeadline(lastTick.Add(evTickInterval))
	for {
		n := l.wait(raw, events)
		l.clock.Store(time.Now().UnixNano())
		for i := range n {
			ev := &events[i]
			if ev.Fd == int32(l.efd) {
				_, _ = unix.Read(l.efd, buf[:])
				continue
			}
			ec := l.conns[ev.Fd]
			if ec == nil {
				continue
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				ec.readable = true
			}
			ec.serve()
		}
		l.mu.Lock()
		q := l.queue
		l.queue, l.spare = l.spare[:0], nil
		l.signal = false
		stop := l.stop
		l.mu.Unlock()
		for i, ec := range q {
			q[i] = nil
			ec.queued.Store(false)
			if !ec.added && !ec.closed {
				if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, ec.fd, &unix.EpollEvent{
					Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(ec.fd),
				}); err != nil {
					// Not served: the handler's next evServe finds the
					// socket unusable and closes the connection.
					ec.readable = true
				} else {
					ec.added = true
					l.conns[int32(ec.fd)] = ec
					ec.readable = true
				}
			}
			ec.serve()
		}
		l.mu.Lock()
		if l.spare == nil {
			l.spare = q[:0]
		}
		l.mu.Unlock()
		// The wake-up's clock: ticks are coarse, a reading per turn is not needed.
		if now := l.now(); now.Sub(lastTick) >= evTickInterval {
			lastTick = now
			_ = l.epf.SetReadDeadline(now.Add(evTickInterval))
			for _, ec := range l.conns {
				ec.tick(now)
			}
		}
		if l.handed.Swap(false) {
			// What the batch readied (the coalescer a write was handed
			// to, a read round) runs now, not when the loop next parks:
			// under load the loop finds new events every time and would
			// keep its processor. A batch that readied nothing (reads
			// answered inline) does not yield: a yield wakes another
			// thread to look for work, which finds none and sleeps again,
			// two system calls and a context switch for nothing.
			runtime.Gosched()
		}
		if stop && len(l.conns) == 0 {
			return
		}
	}
}

// evLoops spreads connections over loops.
type evLoops struct {
	loops []*evLoop
	next  atomic.Uint32
}

// newEvLoops starts n loops.
func newEvLoops(n int) (*evLoops, error) {
	ls := &evLoops{}
	for range n {
		l, err := newEvLoop()
		if err != nil {
			ls.shutdown()
			return nil, err
		}
		ls.loops = append(ls.loops, l)
	}
	return ls, nil
}

func (ls *evLoops) shutdown() {
	for _, l := range ls.loops {
		l.shutdown()
	}
}

// take moves c's socket to a loop for h: false when c is not a plain TCP
// connection (TLS), or its socket could not be taken. c itself is then
// closed for the runtime's poller, but stays the connection's identity
// (addresses, the connection count); the caller closes it when done.
func (ls *evLoops) take(c net.Conn, h evHandler, writeTimeout time.Duration) (*evConn, bool) {
	tcp, prefix, ok := plainTCP(c)
	if !ok {
		return nil, false
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return nil, false
	}
	fd := -1
	if err := raw.Control(func(f uintptr) {
		fd, err = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil || fd < 0 {
		return nil, false
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, false
	}
	_ = tcp.Close()
	l := ls.loops[int(ls.next.Add(1))%len(ls.loops)]
	return &evConn{loop: l, fd: fd, h: h, prefix: prefix, lastRead: time.Now(), writeTimeout: writeTimeout}, true
}

// plainTCP unwraps the node's connection wrappers down to a TCP socket,
// with the bytes protocol detection already read from it.
func plainTCP(c net.Conn) (*net.TCPConn, []byte, bool) {
	var prefix []byte
	for {
		switch v := c.(type) {
		case *countingConn:
			c = v.Conn
		case *sniffedConn:
			if prefix != nil {
				return nil, nil, false
			}
			prefix = v.prefix
			c = v.Conn
		case *net.TCPConn:
			return v, prefix, true
		default:
			return nil, nil, false
		}
	}
}
