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

// binaryConn is one pipelined binary-protocol connection. Any number of
// goroutines send on it; one goroutine reads replies and completes the
// waiting calls by request id. Writes are coalesced: a sender that finds
// another sender writing leaves its frame in the buffer for that one.
type binaryConn struct {
	c     net.Conn
	hello wire.ServerHello

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]func(*wire.Response, error)
	err     error // set once the connection broke

	wmu      sync.Mutex
	wbuf     []byte
	writing  bool
	writeErr error

	done chan struct{}
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
	b := &binaryConn{c: c, hello: sh, pending: make(map[uint64]func(*wire.Response, error)), done: make(chan struct{})}
	go b.readLoop()
	return b, nil
}

// send encodes req (its ID is assigned here) and arranges for cb to be
// called exactly once with the reply or an error. cb runs on the reader
// goroutine and must not block.
func (b *binaryConn) send(req *wire.Request, cb func(*wire.Response, error)) uint64 {
	b.mu.Lock()
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		cb(nil, err)
		return 0
	}
	b.nextID++
	id := b.nextID
	b.pending[id] = cb
	b.mu.Unlock()

	req.ID = id
	b.wmu.Lock()
	b.wbuf = wire.AppendRequest(b.wbuf, req)
	if b.writing {
		b.wmu.Unlock()
		return id
	}
	b.writing = true
	for len(b.wbuf) > 0 {
		buf := b.wbuf
		b.wbuf = nil
		b.wmu.Unlock()
		_, err := b.c.Write(buf)
		b.wmu.Lock()
		if err != nil {
			b.writing = false
			b.wmu.Unlock()
			b.fail(fmt.Errorf("%w: %v", ErrClosed, err))
			return id
		}
		if b.wbuf == nil {
			b.wbuf = buf[:0]
			break
		}
	}
	b.writing = false
	b.wmu.Unlock()
	return id
}

// forget drops a call whose caller gave up; a late reply is discarded.
func (b *binaryConn) forget(id uint64) {
	b.mu.Lock()
	delete(b.pending, id)
	b.mu.Unlock()
}

func (b *binaryConn) readLoop() {
	rd := wire.NewReader(b.c, 64<<10, wire.MaxResponseFrameSize)
	var resp wire.Response
	for {
		f, err := rd.Next()
		if err != nil {
			b.fail(fmt.Errorf("%w: %v", ErrClosed, err))
			return
		}
		if err := wire.DecodeResponse(f, &resp); err != nil {
			b.fail(fmt.Errorf("kvdb: malformed reply: %w", err))
			return
		}
		if f.Op == wire.OpError {
			b.fail(wireError(resp.Status, resp.Payload))
			return
		}
		b.mu.Lock()
		cb := b.pending[resp.ID]
		delete(b.pending, resp.ID)
		b.mu.Unlock()
		if cb != nil {
			cb(detach(&resp), nil)
		}
	}
}

// detach deep-copies a decoded response out of the reader's buffer.
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
	for _, cb := range pending {
		cb(nil, err)
	}
}

func (b *binaryConn) broken() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err != nil
}

func (b *binaryConn) close() { b.fail(ErrClosed) }
