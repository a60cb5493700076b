package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/wire"
)

// Protocol chooses a transport.
type Protocol int

// Transports.
const (
	ProtocolGRPC Protocol = iota
	ProtocolBinary
)

// ParseProtocol reads "grpc" or "binary".
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "grpc":
		return ProtocolGRPC, nil
	case "binary":
		return ProtocolBinary, nil
	}
	return 0, fmt.Errorf("unknown protocol %q: want grpc or binary", s)
}

// Options configure a Client. Zero values take the defaults.
type Options struct {
	// Endpoints are node addresses (host:port); at least one.
	Endpoints []string
	// Protocol is the transport; gRPC by default.
	Protocol Protocol
	// PoolSize is the number of connections to the leader (default 4).
	PoolSize int
	// DialTimeout bounds connecting to one endpoint (default 5 s).
	DialTimeout time.Duration
	// RequestTimeout applies to calls whose context has no deadline
	// (default 5 s).
	RequestTimeout time.Duration
	// MaxRetries bounds the retries of an idempotent call (default 5).
	MaxRetries int
	// BackoffBase is the first retry delay; it doubles per retry up to
	// BackoffMax (defaults 20 ms and 1 s).
	BackoffBase, BackoffMax time.Duration
	// TLS, when set, connects over TLS (both protocols) with this
	// configuration; LoadTLS builds one from PEM files. Nil: plaintext.
	TLS *tls.Config
	// Username and Password, when set, authenticate every connection
	// (a token in gRPC metadata, renewed as needed; AUTH on each binary
	// connection). A server with authentication disabled accepts them.
	Username, Password string
}

func (o *Options) setDefaults() {
	if o.PoolSize <= 0 {
		o.PoolSize = 4
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if o.MaxRetries <= 0 {
		o.MaxRetries = 5
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = 20 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = time.Second
	}
}

// pool is the connections to one endpoint.
type pool struct {
	addr   string
	dial   *dialer
	grpc   []*grpcConn
	binary []*binaryConn
	next   atomic.Uint64
	mu     sync.Mutex // guards redialling binary connections and side
	// side is a gRPC connection for what only gRPC carries (leases, puts
	// with a TTL) when the pool speaks the binary protocol.
	side *grpcConn
}

// Client is a KVDB client. Safe for concurrent use.
type Client struct {
	opts Options
	dial *dialer

	mu     sync.Mutex
	pool   *pool // the leader's (or best known endpoint's) connections
	closed bool
	// finding is closed when the failover round in progress ends (nil:
	// none is).
	finding chan struct{}

	watches watchConns // watch.go
}

// New connects to the leader among opts.Endpoints (or, when none says it
// leads, the first endpoint that answers).
func New(ctx context.Context, opts Options) (*Client, error) {
	opts.setDefaults()
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("kvdb: no endpoints")
	}
	c := &Client{opts: opts, dial: newDialer(&opts)}
	if _, err := c.discover(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Close closes every connection. Calls in flight fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	p := c.pool
	c.pool, c.closed = nil, true
	c.mu.Unlock()
	if p != nil {
		p.close()
	}
	c.watches.close()
	return nil
}

// Endpoint is the address the Client currently sends to.
func (c *Client) Endpoint() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pool == nil {
		return ""
	}
	return c.pool.addr
}

func (p *pool) close() {
	for _, g := range p.grpc {
		g.conn.Close()
	}
	p.mu.Lock()
	if p.side != nil {
		p.side.conn.Close()
	}
	p.mu.Unlock()
	for _, b := range p.binary {
		if b != nil {
			b.close()
		}
	}
}

// discover asks every endpoint for its status and switches the pool to the
// leader. It returns the chosen pool.
func (c *Client) discover(ctx context.Context) (*pool, error) {
	var firstOK string
	var lastErr error
	for _, ep := range c.opts.Endpoints {
		g, err := dialGRPC(ep, c.dial)
		if err != nil {
			lastErr = err
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
		st, err := g.admin.Status(sctx, &kvdbv1.StatusRequest{})
		cancel()
		g.conn.Close()
		if err != nil {
			if c := status.Code(err); c == codes.Unauthenticated || c == codes.PermissionDenied {
				return nil, grpcErr(err)
			}
			lastErr = err
			continue
		}
		if firstOK == "" {
			firstOK = ep
		}
		if st.GetIsLeader() {
			return c.use(ctx, ep)
		}
	}
	if firstOK != "" {
		return c.use(ctx, firstOK)
	}
	return nil, &Error{Code: codes.Unavailable, Message: fmt.Sprintf("no endpoint of %v answered: %v", c.opts.Endpoints, lastErr)}
}

// use makes addr the current endpoint, dialling its pool if it is not
// already the current one.
func (c *Client) use(ctx context.Context, addr string) (*pool, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if c.pool != nil && c.pool.addr == addr {
		p := c.pool
		c.mu.Unlock()
		return p, nil
	}
	c.mu.Unlock()
	p := &pool{addr: addr, dial: c.dial}
	for range c.opts.PoolSize {
		if c.opts.Protocol == ProtocolBinary {
			dctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
			b, err := dialBinary(dctx, addr, c.dial)
			cancel()
			if err != nil {
				p.close()
				return nil, err
			}
			p.binary = append(p.binary, b)
		} else {
			g, err := dialGRPC(addr, c.dial)
			if err != nil {
				p.close()
				return nil, err
			}
			p.grpc = append(p.grpc, g)
		}
	}
	c.mu.Lock()
	old := c.pool
	if c.closed {
		c.mu.Unlock()
		p.close()
		return nil, ErrClosed
	}
	c.pool = p
	c.mu.Unlock()
	if old != nil {
		old.close()
	}
	return p, nil
}

func (c *Client) current() (*pool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.pool == nil {
		return nil, ErrClosed
	}
	return c.pool, nil
}

// binaryConn picks the pool's next binary connection, redialling one that
// broke.
func (p *pool) pickBinary(ctx context.Context, dialTimeout time.Duration) (*binaryConn, error) {
	i := int(p.next.Add(1) % uint64(len(p.binary)))
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.binary[i]
	if b != nil && !b.broken() {
		return b, nil
	}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	nb, err := dialBinary(dctx, p.addr, p.dial)
	if err != nil {
		return nil, &Error{Code: codes.Unavailable, Message: err.Error()}
	}
	p.binary[i] = nb
	return nb, nil
}

// idempotent reports whether req may be sent again after a failure.
func idempotent(op wire.Opcode) bool {
	switch op {
	case wire.OpGet, wire.OpRange, wire.OpPing, wire.OpStats:
		return true
	}
	return false
}

// failover looks for the leader among the endpoints again after a request
// sent on failed (the pool it used) failed with UNAVAILABLE: the node went
// away, is stopping, or lost its leadership. Later requests go to the node
// found. Callers that fail together share one round and wait for it (or
// for ctx); a pool that is no longer the current one was replaced already.
func (c *Client) failover(ctx context.Context, failed *pool) {
	c.mu.Lock()
	if c.closed || c.pool != failed {
		c.mu.Unlock()
		return
	}
	if ch := c.finding; ch != nil {
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		return
	}
	ch := make(chan struct{})
	c.finding = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.finding = nil
		c.mu.Unlock()
		close(ch)
	}()
	// The round serves every waiter: the caller's deadline does not cut
	// it short.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.DialTimeout)
	defer cancel()
	_, _ = c.discover(dctx)
}

// do sends req and waits for its reply, applying the default deadline and
// retrying idempotent requests on UNAVAILABLE with backoff and leader
// discovery. A write that fails with UNAVAILABLE is not sent again, but
// the leader is looked for before it returns, so the next request goes to
// it. Any request refused because the permissions changed while it was in
// flight (notApplied) is sent again at once, as etcd's client does; a
// transaction's commit is not, since its reads were checked at begin.
func (c *Client) do(ctx context.Context, req *wire.Request) (*wire.Response, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.RequestTimeout)
		defer cancel()
	}
	backoff := c.opts.BackoffBase
	for attempt := 0; ; attempt++ {
		p, err := c.current()
		if err != nil {
			return nil, err
		}
		resp, err := c.onceOn(ctx, p, req)
		if err != nil && notApplied(err) && req.Op != wire.OpCommit && attempt < c.opts.MaxRetries {
			continue
		}
		if err == nil || !retryable(err) {
			return resp, err
		}
		if !idempotent(req.Op) || attempt >= c.opts.MaxRetries {
			c.failover(ctx, p)
			return resp, err
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		}
		backoff = min(2*backoff, c.opts.BackoffMax)
		c.failover(ctx, p)
	}
}

func (c *Client) once(ctx context.Context, req *wire.Request) (*wire.Response, error) {
	p, err := c.current()
	if err != nil {
		return nil, err
	}
	return c.onceOn(ctx, p, req)
}

// onceOn sends req once on p's connections.
func (c *Client) onceOn(ctx context.Context, p *pool, req *wire.Request) (*wire.Response, error) {
	if len(p.grpc) > 0 {
		g := p.grpc[p.next.Add(1)%uint64(len(p.grpc))]
		return g.do(ctx, req)
	}
	// The caller waits at once: its request is written by its own
	// goroutine when it starts to wait (with whatever other callers
	// queued meanwhile), not handed to writeLoop.
	return c.startOn(ctx, p, req, true).result(ctx)
}

// Future is the pending result of an asynchronous call. Futures are pooled:
// a Future is waited for once (Wait, or the typed futures' Wait), after
// which it belongs to the Client again.
type Future struct {
	// done carries one token per completion; it is reused with the Future.
	done chan struct{}
	conn *binaryConn
	id   uint64
	// resp is the decoded reply; its byte fields alias body, the Future's
	// own copy of the reply frame's body.
	resp wire.Response
	body []byte
	err  error
	// held: the request was queued by a Pipeline and may not be written
	// yet; waiting for it flushes its connection first.
	held bool
	// client and from: the Client that sent the request and the pool it
	// went to, for failover when it fails with UNAVAILABLE (nil: a
	// request of a transaction's own connection).
	client *Client
	from   *pool
	// abandoned: the waiter gave up on a call its own goroutine still
	// runs (gRPC), which completes the Future later: the Future is not
	// reused, and the waiter reads nothing of it.
	abandoned bool
}

var futures = sync.Pool{New: func() any { return &Future{done: make(chan struct{}, 1)} }}

func newFuture() *Future { return futures.Get().(*Future) }

// complete records err (nil: resp holds the reply) and wakes the waiter.
func (f *Future) complete(err error) {
	if err == nil && f.resp.Status != wire.StatusOK {
		err = wireError(f.resp.Status, f.resp.Payload)
	}
	f.err = err
	f.done <- struct{}{}
}

// completeWith completes f with a response owned elsewhere (gRPC).
func (f *Future) completeWith(resp *wire.Response, err error) {
	if err == nil {
		f.resp = *resp
	}
	f.complete(err)
}

// wait waits for the reply or for ctx to end. On success, f.resp holds the
// reply until release.
func (f *Future) wait(ctx context.Context) error {
	err := f.waitReply(ctx)
	if f.client != nil && Code(err) == codes.Unavailable {
		// Asynchronous requests are not sent again, but the next ones
		// go to the leader.
		f.client.failover(ctx, f.from)
	}
	return err
}

func (f *Future) waitReply(ctx context.Context) error {
	if f.held {
		f.conn.flush()
	}
	// Pipelined replies have often come already: a plain receive is
	// cheaper than the select.
	select {
	case <-f.done:
		return f.err
	default:
	}
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		if f.conn != nil && !f.conn.forget(f.id) {
			// The reader has the call: its completion is imminent, and
			// the Future cannot be reused before it.
			<-f.done
		}
		if f.conn == nil {
			select {
			case <-f.done:
			default:
				// A gRPC call still running on its goroutine.
				f.abandoned = true
			}
		}
		return ctx.Err()
	}
}

// release returns f to the pool. Nothing may use f or its reply after.
func (f *Future) release() {
	if f.abandoned {
		return // its goroutine completes it; the collector takes it
	}
	kvs := f.resp.KVs[:0]
	if f.conn == nil {
		kvs = nil // a gRPC reply's slice is not ours to reuse
	}
	if cap(f.body) > 64<<10 {
		f.body = nil
	}
	f.resp = wire.Response{KVs: kvs}
	f.conn, f.id, f.err, f.held = nil, 0, nil, false
	f.client, f.from = nil, nil
	futures.Put(f)
}

// result waits and returns a response the caller owns.
func (f *Future) result(ctx context.Context) (*wire.Response, error) {
	err := f.wait(ctx)
	var resp *wire.Response
	if err == nil {
		resp = detach(&f.resp)
	}
	f.release()
	return resp, err
}

// Wait waits for the reply or for ctx to end. Call it once.
func (f *Future) Wait(ctx context.Context) (*wire.Response, error) { return f.result(ctx) }

// startOn sends req on one of p's binary connections without waiting;
// held, it only queues it, for the Future's wait to write.
func (c *Client) startOn(ctx context.Context, p *pool, req *wire.Request, held bool) *Future {
	b, err := p.pickBinary(ctx, c.opts.DialTimeout)
	if err != nil {
		return c.failedFuture(p, err)
	}
	f := c.newFuture(p)
	if held {
		b.queue(req, f)
	} else {
		b.send(req, f)
	}
	return f
}

// start begins req asynchronously. On the binary transport the request is
// pipelined on a pooled connection; on gRPC it runs on its own goroutine.
// Asynchronous calls are not retried.
func (c *Client) start(ctx context.Context, req *wire.Request) *Future {
	p, err := c.current()
	if err != nil {
		return failedFuture(err)
	}
	if len(p.binary) > 0 {
		return c.startOn(ctx, p, req, false)
	}
	return c.startGRPC(ctx, p, req)
}

// newFuture is a Future for a request sent on p.
func (c *Client) newFuture(p *pool) *Future {
	f := newFuture()
	f.client, f.from = c, p
	return f
}

// failedFuture is a Future already completed with err.
func failedFuture(err error) *Future {
	f := newFuture()
	f.complete(err)
	return f
}

// failedFuture is a Future for a request that could not be sent on p,
// completed with err.
func (c *Client) failedFuture(p *pool, err error) *Future {
	f := c.newFuture(p)
	f.complete(err)
	return f
}

// startGRPC runs req on p, on a goroutine of its own (the gRPC transport).
func (c *Client) startGRPC(ctx context.Context, p *pool, req *wire.Request) *Future {
	f := c.newFuture(p)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
		defer cancel()
		f.completeWith(c.onceOn(ctx, p, req))
	}()
	return f
}

// KeyValue is a key with its value and revisions.
type KeyValue struct {
	Key, Value                           []byte
	CreateRevision, ModRevision, Version int64
}

func toKV(w wire.KeyValue) KeyValue {
	return KeyValue{Key: w.Key, Value: w.Value, CreateRevision: w.CreateRevision, ModRevision: w.ModRevision, Version: w.Version}
}

// ReadOption tunes a read.
type ReadOption func(*uint8)

// Serializable reads the node's local state without confirming leadership:
// faster, possibly stale.
func Serializable() ReadOption { return func(f *uint8) { *f |= wire.FlagSerializable } }

func readFlags(opts []ReadOption) uint8 {
	var f uint8
	for _, o := range opts {
		o(&f)
	}
	return f
}

// Get returns key; a missing key fails with an error matching ErrNotFound.
func (c *Client) Get(ctx context.Context, key []byte, opts ...ReadOption) (KeyValue, error) {
	resp, err := c.do(ctx, &wire.Request{Op: wire.OpGet, Flags: readFlags(opts), Key: key})
	if err != nil {
		return KeyValue{}, err
	}
	return toKV(resp.KV), nil
}

// Put stores value under key and returns the revision it created.
func (c *Client) Put(ctx context.Context, key, value []byte) (int64, error) {
	resp, err := c.do(ctx, &wire.Request{Op: wire.OpPut, Key: key, Value: value})
	if err != nil {
		return 0, err
	}
	return resp.Revision, nil
}

// Delete removes key and reports how many keys were removed (0 or 1).
func (c *Client) Delete(ctx context.Context, key []byte) (int64, error) {
	resp, err := c.do(ctx, &wire.Request{Op: wire.OpDelete, Key: key})
	if err != nil {
		return 0, err
	}
	return resp.Deleted, nil
}

// RangeOptions tune Range.
type RangeOptions struct {
	End          []byte // exclusive end; empty: just Key; "\x00": to the end
	Prefix       bool   // every key starting with Key (End ignored)
	Limit        int64  // 0: the server's limit
	KeysOnly     bool
	CountOnly    bool
	Serializable bool
}

// RangeResult is what Range found.
type RangeResult struct {
	KVs      []KeyValue
	Count    int64
	More     bool
	Revision int64
}

// Range scans keys in byte order.
func (c *Client) Range(ctx context.Context, key []byte, o RangeOptions) (RangeResult, error) {
	req := &wire.Request{Op: wire.OpRange, Key: key, End: o.End, Limit: o.Limit}
	for _, f := range []struct {
		on   bool
		flag uint8
	}{{o.Prefix, wire.FlagPrefix}, {o.KeysOnly, wire.FlagKeysOnly}, {o.CountOnly, wire.FlagCountOnly}, {o.Serializable, wire.FlagSerializable}} {
		if f.on {
			req.Flags |= f.flag
		}
	}
	resp, err := c.do(ctx, req)
	if err != nil {
		return RangeResult{}, err
	}
	r := RangeResult{Count: resp.Count, More: resp.More, Revision: resp.Revision}
	for _, kv := range resp.KVs {
		r.KVs = append(r.KVs, toKV(kv))
	}
	return r, nil
}

// BatchOp is one write of a Batch: a put, or a delete when Delete is set.
type BatchOp struct {
	Delete     bool
	Key, Value []byte
}

// BatchResult reports an applied batch.
type BatchResult struct {
	Revision, Puts, Deleted int64
}

// Batch applies puts and deletes atomically at one revision.
func (c *Client) Batch(ctx context.Context, ops []BatchOp) (BatchResult, error) {
	req := &wire.Request{Op: wire.OpBatch, Ops: make([]wire.BatchOp, len(ops))}
	for i, op := range ops {
		req.Ops[i] = wire.BatchOp{Type: wire.BatchPut, Key: op.Key, Value: op.Value}
		if op.Delete {
			req.Ops[i] = wire.BatchOp{Type: wire.BatchDelete, Key: op.Key}
		}
	}
	resp, err := c.do(ctx, req)
	if err != nil {
		return BatchResult{}, err
	}
	return BatchResult{Revision: resp.Revision, Puts: resp.Puts, Deleted: resp.Deleted}, nil
}

// Ping checks that the current endpoint answers.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.do(ctx, &wire.Request{Op: wire.OpPing})
	return err
}

// Stats returns the node's STATS sections.
func (c *Client) Stats(ctx context.Context) (*kvdbv1.StatsResponse, error) {
	resp, err := c.do(ctx, &wire.Request{Op: wire.OpStats})
	if err != nil {
		return nil, err
	}
	st := &kvdbv1.StatsResponse{}
	// Fields this client does not know (a newer server's additions to the
	// document) are skipped rather than failing the call.
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(resp.Payload, st); err != nil {
		return nil, fmt.Errorf("kvdb: decode stats: %w", err)
	}
	return st, nil
}

// GetFuture is the pending result of GetAsync.
type GetFuture struct{ f *Future }

// Wait returns the key-value or the error. Call it once.
func (g GetFuture) Wait(ctx context.Context) (KeyValue, error) {
	err := g.f.wait(ctx)
	var kv KeyValue
	if err == nil {
		kv = ownKV(g.f.resp.KV)
	}
	g.f.release()
	return kv, err
}

// Err waits like Wait and returns only the error, without copying the
// value out: for callers that need to know that the key was read.
func (g GetFuture) Err(ctx context.Context) error {
	err := g.f.wait(ctx)
	g.f.release()
	return err
}

// ownKV copies a key-value out of a reusable buffer, key and value in one
// allocation.
func ownKV(w wire.KeyValue) KeyValue {
	buf := make([]byte, len(w.Key)+len(w.Value))
	n := copy(buf, w.Key)
	copy(buf[n:], w.Value)
	return KeyValue{Key: buf[:n:n], Value: buf[n:], CreateRevision: w.CreateRevision, ModRevision: w.ModRevision, Version: w.Version}
}

// PutFuture is the pending result of PutAsync.
type PutFuture struct{ f *Future }

// Wait returns the revision the put created, or the error. Call it once.
func (p PutFuture) Wait(ctx context.Context) (int64, error) {
	err := p.f.wait(ctx)
	var rev int64
	if err == nil {
		rev = p.f.resp.Revision
	}
	p.f.release()
	return rev, err
}

// Err waits like Wait and returns only the error.
func (p PutFuture) Err(ctx context.Context) error {
	_, err := p.Wait(ctx)
	return err
}

// DeleteFuture is the pending result of DeleteAsync.
type DeleteFuture struct{ f *Future }

// Wait returns how many keys were removed (0 or 1), or the error. Call it
// once.
func (d DeleteFuture) Wait(ctx context.Context) (int64, error) {
	err := d.f.wait(ctx)
	var n int64
	if err == nil {
		n = d.f.resp.Deleted
	}
	d.f.release()
	return n, err
}

// Err waits like Wait and returns only the error.
func (d DeleteFuture) Err(ctx context.Context) error {
	_, err := d.Wait(ctx)
	return err
}

// DeleteAsync sends a Delete of key without waiting for it. key must not be
// modified until the Future completes.
func (c *Client) DeleteAsync(ctx context.Context, key []byte) DeleteFuture {
	req := wire.Request{Op: wire.OpDelete, Key: key}
	return DeleteFuture{c.start(ctx, &req)}
}

// GetAsync sends a Get without waiting for it. key must not be modified
// until the Future completes.
func (c *Client) GetAsync(ctx context.Context, key []byte, opts ...ReadOption) GetFuture {
	req := wire.Request{Op: wire.OpGet, Flags: readFlags(opts), Key: key}
	return GetFuture{c.start(ctx, &req)}
}

// PutAsync sends a Put without waiting for it. key and value must not be
// modified until the Future completes.
func (c *Client) PutAsync(ctx context.Context, key, value []byte) PutFuture {
	req := wire.Request{Op: wire.OpPut, Key: key, Value: value}
	return PutFuture{c.start(ctx, &req)}
}
