package client

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// Leases and TTLs, in etcd's model: Grant a lease, attach keys to it with
// Put and WithLease, keep it alive (KeepAlive, or a Session in the
// background); when it is revoked or not kept alive within its TTL, its
// keys are deleted together. WithTTL makes one key expire on its own.
// These calls travel over gRPC whatever Options.Protocol says (on the same
// port).

// LeaseID names a lease.
type LeaseID int64

// LeaseInfo is a lease's state: its id, the time it has left (as the
// leader counts it) and the TTL it was granted, and its keys when asked.
type LeaseInfo struct {
	ID         LeaseID
	TTL        time.Duration // -1 when the lease does not exist
	GrantedTTL time.Duration
	Keys       [][]byte
}

// sideConn is the gRPC connection for leases and puts with options.
func (c *Client) sideConn() (*grpcConn, error) {
	p, err := c.current()
	if err != nil {
		return nil, err
	}
	if len(p.grpc) > 0 {
		return p.grpc[p.next.Add(1)%uint64(len(p.grpc))], nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.side == nil {
		g, err := dialGRPC(p.addr, p.dial)
		if err != nil {
			return nil, err
		}
		p.side = g
	}
	return p.side, nil
}

// onLeader runs call against the current endpoint; when it answers that
// it is not the leader (or is unavailable), the client looks for the
// leader again and retries once.
func onLeader[T any](ctx context.Context, c *Client, call func(*grpcConn) (T, error)) (T, error) {
	g, err := c.sideConn()
	if err != nil {
		var zero T
		return zero, err
	}
	r, err := call(g)
	if code := Code(grpcErr(err)); code == codes.FailedPrecondition || code == codes.Unavailable {
		if _, derr := c.discover(ctx); derr == nil {
			if g, err = c.sideConn(); err == nil {
				r, err = call(g)
			}
		}
	}
	return r, grpcErr(err)
}

// seconds rounds d up to whole seconds, at least one.
func seconds(d time.Duration) int64 { return max(int64((d+time.Second-1)/time.Second), 1) }

// Grant creates a lease that expires unless kept alive within ttl (rounded
// up to whole seconds).
func (c *Client) Grant(ctx context.Context, ttl time.Duration) (LeaseID, error) {
	r, err := onLeader(ctx, c, func(g *grpcConn) (*kvdbv1.LeaseGrantResponse, error) {
		return g.lease.LeaseGrant(ctx, &kvdbv1.LeaseGrantRequest{Ttl: seconds(ttl)})
	})
	return LeaseID(r.GetId()), err
}

// Revoke deletes the lease and every key attached to it.
func (c *Client) Revoke(ctx context.Context, id LeaseID) error {
	_, err := onLeader(ctx, c, func(g *grpcConn) (*kvdbv1.LeaseRevokeResponse, error) {
		return g.lease.LeaseRevoke(ctx, &kvdbv1.LeaseRevokeRequest{Id: int64(id)})
	})
	return err
}

// ErrLeaseNotFound is KeepAlive's answer for a lease that does not exist
// (any more): its keys are gone.
var ErrLeaseNotFound = &Error{Code: codes.NotFound, Message: "requested lease not found"}

// KeepAlive renews the lease once, to its full TTL, and returns that TTL.
// The leader renews; the client finds it.
func (c *Client) KeepAlive(ctx context.Context, id LeaseID) (time.Duration, error) {
	r, err := onLeader(ctx, c, func(g *grpcConn) (*kvdbv1.LeaseKeepAliveResponse, error) {
		s, err := g.lease.LeaseKeepAlive(ctx)
		if err != nil {
			return nil, err
		}
		if err := s.Send(&kvdbv1.LeaseKeepAliveRequest{Id: int64(id)}); err != nil {
			return nil, err
		}
		r, err := s.Recv()
		_ = s.CloseSend()
		return r, err
	})
	if err != nil {
		return 0, err
	}
	if r.GetTtl() <= 0 {
		return 0, ErrLeaseNotFound
	}
	return time.Duration(r.GetTtl()) * time.Second, nil
}

// TimeToLive reports a lease; with keys, its attached keys.
func (c *Client) TimeToLive(ctx context.Context, id LeaseID, keys bool) (LeaseInfo, error) {
	r, err := onLeader(ctx, c, func(g *grpcConn) (*kvdbv1.LeaseTimeToLiveResponse, error) {
		return g.lease.LeaseTimeToLive(ctx, &kvdbv1.LeaseTimeToLiveRequest{Id: int64(id), Keys: keys})
	})
	if err != nil {
		return LeaseInfo{}, err
	}
	info := LeaseInfo{ID: id, TTL: time.Duration(r.GetTtl()) * time.Second, GrantedTTL: time.Duration(r.GetGrantedTtl()) * time.Second, Keys: r.GetKeys()}
	if r.GetTtl() < 0 {
		info.TTL = -1
	}
	return info, nil
}

// Leases lists every lease, by id, asking the node a page at a time.
func (c *Client) Leases(ctx context.Context) ([]LeaseID, error) {
	var out []LeaseID
	after := int64(0)
	for {
		r, err := onLeader(ctx, c, func(g *grpcConn) (*kvdbv1.LeaseLeasesResponse, error) {
			return g.lease.LeaseLeases(ctx, &kvdbv1.LeaseLeasesRequest{After: after})
		})
		if err != nil {
			return nil, err
		}
		for _, l := range r.GetLeases() {
			out = append(out, LeaseID(l.GetId()))
		}
		if !r.GetMore() || len(r.GetLeases()) == 0 {
			return out, nil
		}
		after = r.GetLeases()[len(r.GetLeases())-1].GetId()
	}
}

// PutOption changes what a put does.
type PutOption func(*kvdbv1.PutRequest)

// WithLease attaches the key to a lease: it is deleted with it.
func WithLease(id LeaseID) PutOption { return func(r *kvdbv1.PutRequest) { r.Lease = int64(id) } }

// WithTTL makes the key expire ttl after the put (millisecond precision).
func WithTTL(ttl time.Duration) PutOption {
	return func(r *kvdbv1.PutRequest) { r.TtlMs = max(ttl.Milliseconds(), 1) }
}

// PutWith is Put with options (WithLease, WithTTL); it returns the
// revision the put created.
func (c *Client) PutWith(ctx context.Context, key, value []byte, opts ...PutOption) (int64, error) {
	req := &kvdbv1.PutRequest{Key: key, Value: value}
	for _, o := range opts {
		o(req)
	}
	if req.GetLease() == 0 && req.GetTtlMs() == 0 {
		return c.Put(ctx, key, value)
	}
	r, err := onLeader(ctx, c, func(g *grpcConn) (*kvdbv1.PutResponse, error) { return g.kv.Put(ctx, req) })
	return r.GetHeader().GetRevision(), err
}

// Session is a lease kept alive in the background while the program runs,
// the basis of locks, service registration and leader election: keys put
// WithLease(s.Lease()) live as long as the session. Close revokes it. If
// the lease is lost (the process stalled past its TTL, the cluster was
// unreachable), Done is closed and Err says why.
type Session struct {
	c      *Client
	id     LeaseID
	ttl    time.Duration
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup

	mu  sync.Mutex
	err error
}

// NewSession grants a lease of ttl (at least a second) and keeps it alive,
// renewing every third of the TTL.
func (c *Client) NewSession(ctx context.Context, ttl time.Duration) (*Session, error) {
	ttl = time.Duration(seconds(ttl)) * time.Second
	id, err := c.Grant(ctx, ttl)
	if err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	s := &Session{c: c, id: id, ttl: ttl, cancel: cancel, done: make(chan struct{})}
	s.wg.Add(1)
	go s.keepAlive(bg)
	return s, nil
}

// Lease is the session's lease.
func (s *Session) Lease() LeaseID { return s.id }

// Done is closed when the session ends: closed, or its lease lost.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is why the session ended (nil while it lives or after Close).
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Session) keepAlive(ctx context.Context) {
	defer s.wg.Done()
	defer close(s.done)
	t := time.NewTicker(s.ttl / 3)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, s.ttl/3)
		_, err := s.c.KeepAlive(cctx, s.id)
		cancel()
		switch {
		case err == nil:
			last = time.Now()
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrLeaseNotFound) || time.Since(last) > s.ttl:
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
	}
}

// Close stops keeping the lease alive and revokes it, deleting its keys.
func (s *Session) Close(ctx context.Context) error {
	s.cancel()
	s.wg.Wait()
	if s.Err() != nil {
		return nil // the lease is gone already
	}
	return s.c.Revoke(ctx, s.id)
}
