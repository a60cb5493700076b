package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/kvdb/kvdb/internal/wire"
)

// binaryConn is one pipelined binary-protocol connection with two
// goroutines: writeLoop writes every request encoded since its last write
// in one system call, and readLoop decodes replies and completes the
// waiting Futures by request id. Senders only append their encoded frame to
// the output buffer and wake writeLoop if it sleeps: no goroutine, channel
// or closure per request, and Futures and their buffers are pooled. A
// Pipeline's Flush, and a synchronous call when it starts to wait, write
// on the caller's goroutine instead of waking writeLoop, saving the
// hand-off; writeLoop serves the asynchronous calls.
type binaryConn struct {
	c     net.Conn
	hello wire.ServerHello

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]*Future
	err     error  // set once the connection broke
	wbuf    []byte // requests not yet written; guarded by mu
	kicked  bool   // writeLoop has been woken for wbuf; guarded by mu

	// wmu is held by whoever writes to the socket (writeLoop or a
	// Pipeline's Flush), from taking wbuf to the end of the write, so
	// writes go out in the order they were buffered; spare is its other
	// buffer.
	wmu   sync.Mutex
	spare []byte
	kick  chan struct{}
	done  chan struct{}
}

func dialBinary(ctx context.Context, addr string, d *dialer) (*binaryConn, error) {
	tlsCfg := d.tls
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("kvdb: dial %s: %w", addr, err)
	}
	if tlsCfg != nil {
		// The binary protocol over TLS is the same frames inside the TLS
		// session (docs/protocol.md); no ALPN is offered.
		cfg := tlsCfg.Clone()
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			cfg.ServerName = host
		}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("kvdb: TLS handshake with %s: %w", addr, err)
		}
		c = tc
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	var hello [wire.ServerHelloSize]byte
	_, err = c.Write(wire.AppendClientHello(nil, wire.Version))
	if err == nil {
		_, err = io.ReadFull(c, hello[:])
	}
	var sh wire.ServerHello
	if err == nil {
		sh, err = wire.ParseServerHello(hello[:])
	}
	if err == nil && d.user != "" {
		err = d.authenticateBinary(ctx, c, addr)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("kvdb: binary handshake with %s: %w", addr, err)
	}
	_ = c.SetDeadline(time.Time{})
	b := &binaryConn{c: c, hello: sh, pending: make(map[uint64]*Future), kick: make(chan struct{}, 1), done: make(chan struct{})}
	go b.readLoop()
	go b.writeLoop()
	return b, nil
}

// send encodes req (its ID is assigned here) for writeLoop and registers
// f, which readLoop completes with the reply, or fail with an error.
func (b *binaryConn) send(req *wire.Request, f *Future) { b.enqueue(req, f, true) }

// queue is send without waking writeLoop: the request waits in the output
// buffer for flush, or for any other request's send on the connection.
func (b *binaryConn) queue(req *wire.Request, f *Future) {
	f.held = true
	b.enqueue(req, f, false)
}

// flush writes the requests queued and not written yet, on the caller's
// goroutine, unless writeLoop has been woken for them already.
func (b *binaryConn) flush() {
	b.mu.Lock()
	pending := !b.kicked && len(b.wbuf) > 0
	b.mu.Unlock()
	if pending {
		b.writeNow()
	}
}

// writeNow writes everything buffered and fails the connection if the
// write fails.
func (b *binaryConn) writeNow() error {
	b.wmu.Lock()
	err := b.writeOut()
	b.wmu.Unlock()
	if err != nil {
		b.fail(fmt.Errorf("%w: %v", ErrClosed, err))
	}
	return err
}

// writeOut writes everything buffered in one system call; wmu is held.
func (b *binaryConn) writeOut() error {
	b.mu.Lock()
	buf := b.wbuf
	b.wbuf = b.spare[:0]
	b.kicked = false
	b.mu.Unlock()
	if len(buf) == 0 {
		b.spare = buf
		return nil
	}
	_, err := b.c.Write(buf)
	// Do not keep a huge buffer (a large batch) for the connection's
	// lifetime.
	if cap(buf) > 1<<20 {
		buf = nil
	}
	b.spare = buf[:0]
	return err
}

func (b *binaryConn) enqueue(req *wire.Request, f *Future, kick bool) {
	f.conn = b
	b.mu.Lock()
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		f.complete(err)
		return
	}
	b.nextID++
	f.id = b.nextID
	req.ID = f.id
	b.pending[f.id] = f
	switch req.Op {
	case wire.OpGet:
		b.wbuf = wire.AppendGet(b.wbuf, req.ID, req.Flags, req.Key)
	case wire.OpPut:
		b.wbuf = wire.AppendPut(b.wbuf, req.ID, req.Flags, req.Key, req.Value)
	default:
		b.wbuf = wire.AppendRequest(b.wbuf, req)
	}
	wake := kick && !b.kicked
	if wake {
		b.kicked = true
	}
	b.mu.Unlock()
	if wake {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

// writeLoop writes whatever senders buffered, one write per wake-up.
func (b *binaryConn) writeLoop() {
	for {
		select {
		case <-b.kick:
		case <-b.done:
			return
		}
		if b.writeNow() != nil {
			return
		}
	}
}

// forget drops a call whose caller gave up; a late reply is discarded. It
// reports whether the call was still pending: when it was not, readLoop
// (or fail) has completed it or is completing it.
func (b *binaryConn) forget(id uint64) bool {
	b.mu.Lock()
	_, ok := b.pending[id]
	delete(b.pending, id)
	b.mu.Unlock()
	return ok
}

func (b *binaryConn) readLoop() {
	rd := wire.NewReader(b.c, 64<<10, wire.MaxResponseFrameSize)
	for {
		fr, err := rd.Next()
		if err != nil {
			b.fail(fmt.Errorf("%w: %v", ErrClosed, err))
			return
		}
		if fr.Op == wire.OpError {
			var resp wire.Response
			if err := wire.DecodeResponse(fr, &resp); err != nil {
				b.fail(fmt.Errorf("kvdb: malformed reply: %w", err))
				return
			}
			b.fail(wireError(resp.Status, resp.Payload))
			return
		}
		b.mu.Lock()
		f := b.pending[fr.ID]
		delete(b.pending, fr.ID)
		b.mu.Unlock()
		if f == nil {
			continue
		}
		// The Future keeps its own copy of the body, decoded in place.
		f.body = append(f.body[:0], fr.Body...)
		fr.Body = f.body
		if err := wire.DecodeResponse(fr, &f.resp); err != nil {
			f.complete(fmt.Errorf("kvdb: malformed reply: %w", err))
			b.fail(fmt.Errorf("kvdb: malformed reply: %w", err))
			return
		}
		f.complete(nil)
	}
}

// detach deep-copies a decoded response out of a reusable buffer.
func detach(r *wire.Response) *wire.Response {
	out := *r
	size := len(r.Payload) + len(r.KV.Key) + len(r.KV.Value)
	for _, kv := range r.KVs {
		size += len(kv.Key) + len(kv.Value)
	}
	arena := make([]byte, 0, size)
	cp := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		arena = append(arena, b...)
		return arena[len(arena)-len(b) : len(arena) : len(arena)]
	}
	out.Payload = cp(r.Payload)
	out.KV.Key, out.KV.Value = cp(r.KV.Key), cp(r.KV.Value)
	out.KVs = nil
	if len(r.KVs) > 0 {
		out.KVs = make([]wire.KeyValue, len(r.KVs))
		for i, kv := range r.KVs {
			kv.Key, kv.Value = cp(kv.Key), cp(kv.Value)
			out.KVs[i] = kv
		}
	}
	return &out
}

// fail breaks the connection and fails every waiting call with err.
func (b *binaryConn) fail(err error) {
	b.mu.Lock()
	if b.err != nil {
		b.mu.Unlock()
		return
	}
	b.err = err
	pending := b.pending
	b.pending = nil
	close(b.done)
	b.mu.Unlock()
	b.c.Close()
	for _, f := range pending {
		f.complete(err)
	}
}

func (b *binaryConn) broken() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err != nil
}

func (b *binaryConn) close() { b.fail(ErrClosed) }
