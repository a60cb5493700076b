package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	kvclient "github.com/kvdb/kvdb/client"
	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// KVDB drives a KVDB node or cluster through the public client: gets, puts,
// deletes and batches over the client's transport, gets and puts pipelined
// on the binary protocol, transactions through TxnService.Execute (always
// gRPC: the binary protocol has no transaction opcodes yet).
type KVDB struct {
	c     *kvclient.Client
	reads []kvclient.ReadOption
	sec   Security

	// txnMu guards the connection transactions go on (opened by
	// EnableTxn), to txnEP: the endpoint the client sends to, followed
	// when the client moves to another leader.
	txnMu     sync.Mutex
	txnOn     bool
	txnEP     string
	txnC      *grpc.ClientConn
	txn       kvdbv1.TxnServiceClient
	txnClosed bool
}

var (
	_ Driver    = (*KVDB)(nil)
	_ Pipeliner = (*KVDB)(nil)
)

// NewKVDB connects to the leader among endpoints with connections pooled
// connections. serializable makes reads local (possibly stale) reads.
// Security is how the load generator connects: TLS (nil: plaintext) and a
// user to authenticate as ("" : none).
type Security struct {
	TLS                *tls.Config
	Username, Password string
}

func NewKVDB(ctx context.Context, endpoints []string, protocol kvclient.Protocol, connections int, serializable bool, sec Security) (*KVDB, error) {
	c, err := kvclient.New(ctx, kvclient.Options{Endpoints: endpoints, Protocol: protocol, PoolSize: connections,
		TLS: sec.TLS, Username: sec.Username, Password: sec.Password})
	if err != nil {
		return nil, err
	}
	d := &KVDB{c: c, sec: sec}
	if serializable {
		d.reads = []kvclient.ReadOption{kvclient.Serializable()}
	}
	return d, nil
}

// txnService is the TxnService of the endpoint the client sends to, its
// connection opened again when the client moved to another node.
func (d *KVDB) txnService() (kvdbv1.TxnServiceClient, error) {
	d.txnMu.Lock()
	defer d.txnMu.Unlock()
	if !d.txnOn {
		return nil, status.Error(codes.FailedPrecondition, "bench: transactions need EnableTxn first")
	}
	if d.txnClosed {
		return nil, status.Error(codes.Unavailable, "bench: closed")
	}
	ep := d.c.Endpoint()
	if d.txn != nil && ep == d.txnEP {
		return d.txn, nil
	}
	creds := insecure.NewCredentials()
	if d.sec.TLS != nil {
		creds = credentials.NewTLS(d.sec.TLS)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if d.sec.Username != "" {
		opts = append(opts, grpc.WithChainUnaryInterceptor(kvclient.AuthInterceptor(d.sec.Username, d.sec.Password)))
	}
	conn, err := grpc.NewClient(kvclient.Target(ep), opts...)
	if err != nil {
		return nil, err
	}
	if d.txnC != nil {
		// Calls in flight on the old node's connection fail; they
		// failed or were failing anyway.
		_ = d.txnC.Close()
	}
	d.txnC, d.txn, d.txnEP = conn, kvdbv1.NewTxnServiceClient(conn), ep
	return d.txn, nil
}

// EnableTxn opens the gRPC connection transactions are sent on, to the
// endpoint the client chose (and later to the one it moves to). Call it
// before Run when the workload is OpTxn.
func (d *KVDB) EnableTxn() error {
	d.txnMu.Lock()
	d.txnOn = true
	d.txnMu.Unlock()
	_, err := d.txnService()
	return err
}

// coded gives err the status code the client assigns it (a broken
// connection is UNAVAILABLE), so errors group by code.
func coded(err error) error {
	if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(kvclient.Code(err), err.Error())
}

// Get reads key.
func (d *KVDB) Get(ctx context.Context, key []byte) error {
	_, err := d.c.Get(ctx, key, d.reads...)
	return coded(err)
}

// Put writes key.
func (d *KVDB) Put(ctx context.Context, key, value []byte) error {
	_, err := d.c.Put(ctx, key, value)
	return coded(err)
}

// Delete removes key.
func (d *KVDB) Delete(ctx context.Context, key []byte) error {
	_, err := d.c.Delete(ctx, key)
	return coded(err)
}

// Batch writes kvs at one revision.
func (d *KVDB) Batch(ctx context.Context, kvs []KV) error {
	ops := make([]kvclient.BatchOp, len(kvs))
	for i, kv := range kvs {
		ops[i] = kvclient.BatchOp{Key: kv.Key, Value: kv.Value}
	}
	_, err := d.c.Batch(ctx, ops)
	return coded(err)
}

// Txn reads readKey and puts writeKey in one Execute.
func (d *KVDB) Txn(ctx context.Context, readKey, writeKey, value []byte) error {
	t, err := d.txnService()
	if err != nil {
		return err
	}
	_, err = t.Execute(ctx, &kvdbv1.ExecuteRequest{Success: []*kvdbv1.ExecuteOp{
		{Op: &kvdbv1.ExecuteOp_Range{Range: &kvdbv1.RangeRequest{Key: readKey}}},
		{Op: &kvdbv1.ExecuteOp_Put{Put: &kvdbv1.PutRequest{Key: writeKey, Value: value}}},
	}})
	if Code(err) == codes.Unavailable {
		// The transaction's node went away or is stopping: a ping
		// through the client (retried, with the leader looked for again
		// when it fails) moves the client, and the next transaction
		// follows it.
		_ = d.c.Ping(ctx)
	}
	return coded(err)
}

// Pipeline returns a Pipe on the client's binary connections (a goroutine
// per call on gRPC).
func (d *KVDB) Pipeline() Pipe { return kvdbPipe{p: d.c.Pipeline(), reads: d.reads} }

type kvdbPipe struct {
	p     *kvclient.Pipeline
	reads []kvclient.ReadOption
}

// GetAsync queues a get.
func (k kvdbPipe) GetAsync(ctx context.Context, key []byte) Waiter {
	return getWaiter{k.p.GetAsync(ctx, key, k.reads...)}
}

// PutAsync queues a put.
func (k kvdbPipe) PutAsync(ctx context.Context, key, value []byte) Waiter {
	return putWaiter{k.p.PutAsync(ctx, key, value)}
}

// DeleteAsync queues a delete.
func (k kvdbPipe) DeleteAsync(ctx context.Context, key []byte) Waiter {
	return deleteWaiter{k.p.DeleteAsync(ctx, key)}
}

// Flush writes what was queued.
func (k kvdbPipe) Flush() { k.p.Flush() }

type deleteWaiter struct{ f kvclient.DeleteFuture }

func (d deleteWaiter) Wait(ctx context.Context) error { return coded(d.f.Err(ctx)) }

// The waiters hold one pointer each, so boxing them in a Waiter does not
// allocate.
type getWaiter struct{ f kvclient.GetFuture }

func (g getWaiter) Wait(ctx context.Context) error { return coded(g.f.Err(ctx)) }

type putWaiter struct{ f kvclient.PutFuture }

func (p putWaiter) Wait(ctx context.Context) error { return coded(p.f.Err(ctx)) }

// Close closes the connections.
func (d *KVDB) Close() error {
	d.txnMu.Lock()
	if d.txnC != nil {
		_ = d.txnC.Close()
	}
	d.txnClosed = true
	d.txnMu.Unlock()
	return d.c.Close()
}

// Spread sends reads to every node of a cluster and writes to the leader:
// linearizable reads on followers go through each follower's own batched
// ReadIndex round, so the read load is shared by the members.
type Spread struct {
	*KVDB   // the leader's: writes, batches, transactions
	readers []*KVDB
	next    atomic.Uint64
}

var (
	_ Driver    = (*Spread)(nil)
	_ Pipeliner = (*Spread)(nil)
)

// NewSpread connects to the leader among endpoints and, for reads, to each
// endpoint with its share of connections (at least one).
func NewSpread(ctx context.Context, endpoints []string, protocol kvclient.Protocol, connections int, serializable bool, sec Security) (*Spread, error) {
	leader, err := NewKVDB(ctx, endpoints, protocol, connections, serializable, sec)
	if err != nil {
		return nil, err
	}
	s := &Spread{KVDB: leader}
	per := max(1, connections/len(endpoints))
	for _, ep := range endpoints {
		r, err := NewKVDB(ctx, []string{ep}, protocol, per, serializable, sec)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.readers = append(s.readers, r)
	}
	return s, nil
}

func (s *Spread) reader() *KVDB {
	return s.readers[s.next.Add(1)%uint64(len(s.readers))]
}

// Get reads key on the next node in turn.
func (s *Spread) Get(ctx context.Context, key []byte) error { return s.reader().Get(ctx, key) }

// Pipeline returns a Pipe that sends gets to every node in turn and writes
// to the leader.
func (s *Spread) Pipeline() Pipe {
	sp := &spreadPipe{leader: s.KVDB.Pipeline()}
	for _, r := range s.readers {
		sp.readers = append(sp.readers, r.Pipeline())
	}
	return sp
}

type spreadPipe struct {
	leader  Pipe
	readers []Pipe
	next    int
}

// GetAsync queues a get on the next node in turn.
func (p *spreadPipe) GetAsync(ctx context.Context, key []byte) Waiter {
	p.next++
	return p.readers[p.next%len(p.readers)].GetAsync(ctx, key)
}

// PutAsync queues a put on the leader.
func (p *spreadPipe) PutAsync(ctx context.Context, key, value []byte) Waiter {
	return p.leader.PutAsync(ctx, key, value)
}

// DeleteAsync queues a delete on the leader.
func (p *spreadPipe) DeleteAsync(ctx context.Context, key []byte) Waiter {
	return p.leader.DeleteAsync(ctx, key)
}

// Flush writes what every node's pipe queued.
func (p *spreadPipe) Flush() {
	p.leader.Flush()
	for _, r := range p.readers {
		r.Flush()
	}
}

// Close closes every connection.
func (s *Spread) Close() error {
	for _, r := range s.readers {
		r.Close()
	}
	return s.KVDB.Close()
}
