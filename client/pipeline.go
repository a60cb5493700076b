package client

import (
	"context"

	"github.com/kvdb/kvdb/internal/wire"
)

// Pipeline sends requests together, as a Redis client's pipeline does: on
// the binary transport the requests made through it between two Flushes go
// on one connection and are written in one system call when Flush is
// called, where requests of the Client's own GetAsync, PutAsync and
// DeleteAsync are spread over the pool and written as they come. The
// server then reads and answers them as one batch too. Waiting for a
// Future of a request not flushed yet flushes it first, so a forgotten
// Flush costs a system call, not a hang.
//
// A Pipeline is used by one goroutine at a time and may be reused after
// Flush; each window after a Flush takes the pool's next connection. On
// the gRPC transport its requests are sent like the Client's own
// asynchronous calls and Flush does nothing. Pipelined requests are not
// retried.
//
//	p := c.Pipeline()
//	a := p.GetAsync(ctx, []byte("a"))
//	b := p.PutAsync(ctx, []byte("b"), []byte("1"))
//	p.Flush()
//	kv, err := a.Wait(ctx)
//	rev, err := b.Wait(ctx)
type Pipeline struct {
	c *Client
	// conn and from: the connection this window's requests are queued
	// on, and the pool it belongs to (nil: none queued since the last
	// Flush).
	conn *binaryConn
	from *pool
}

// Pipeline returns a new, empty Pipeline on c.
func (c *Client) Pipeline() *Pipeline { return &Pipeline{c: c} }

// GetAsync queues a Get of key. key must not be modified until the Future
// completes.
func (p *Pipeline) GetAsync(ctx context.Context, key []byte, opts ...ReadOption) GetFuture {
	req := wire.Request{Op: wire.OpGet, Flags: readFlags(opts), Key: key}
	return GetFuture{p.start(ctx, &req)}
}

// PutAsync queues a Put. key and value must not be modified until the
// Future completes.
func (p *Pipeline) PutAsync(ctx context.Context, key, value []byte) PutFuture {
	req := wire.Request{Op: wire.OpPut, Key: key, Value: value}
	return PutFuture{p.start(ctx, &req)}
}

// DeleteAsync queues a Delete of key. key must not be modified until the
// Future completes.
func (p *Pipeline) DeleteAsync(ctx context.Context, key []byte) DeleteFuture {
	req := wire.Request{Op: wire.OpDelete, Key: key}
	return DeleteFuture{p.start(ctx, &req)}
}

// Flush writes the requests queued since the last Flush.
func (p *Pipeline) Flush() {
	if p.conn != nil {
		p.conn.flush()
	}
	p.conn, p.from = nil, nil
}

func (p *Pipeline) start(ctx context.Context, req *wire.Request) *Future {
	pl, err := p.c.current()
	if err != nil {
		return failedFuture(err)
	}
	if len(pl.binary) == 0 {
		return p.c.startGRPC(ctx, pl, req)
	}
	if p.conn == nil || p.from != pl || p.conn.broken() {
		// A new window, or the client moved to another node or the
		// connection broke: what was queued goes out now.
		p.Flush()
		b, err := pl.pickBinary(ctx, p.c.opts.DialTimeout)
		if err != nil {
			return p.c.failedFuture(pl, err)
		}
		p.conn, p.from = b, pl
	}
	f := p.c.newFuture(pl)
	p.conn.queue(req, f)
	return f
}
