package core

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/kvdb/kvdb/internal/auth"
	"github.com/kvdb/kvdb/internal/command"
	"github.com/kvdb/kvdb/internal/engine"
)

// Leases, in etcd's model. The replicated state (id, granted TTL, attached
// keys) lives in the engine and is changed only by log entries. A lease's
// deadline lives in the leader's memory alone (the lessor): a new leader
// gives every lease now + TTL + one election timeout, keep-alives renew to
// now + TTL, and the leader's expiry loop (expire.go) proposes the revoke
// of every lease whose deadline passed. Followers answer keep-alives with
// the not-leader error naming the leader.

// Errors of the lease operations.
var (
	// ErrLeaseNotFound is an operation on a lease that does not exist.
	ErrLeaseNotFound = &Error{Code: NotFound, Msg: "requested lease not found"}
	// ErrLeaseExists is a grant of an id already in use.
	ErrLeaseExists = &Error{Code: FailedPrecondition, Msg: "lease already exists"}
)

// leaseError gives the engine's lease errors their codes.
func leaseError(err error) error {
	switch {
	case errors.Is(err, engine.ErrLeaseNotFound):
		return ErrLeaseNotFound
	case errors.Is(err, engine.ErrLeaseExists):
		return ErrLeaseExists
	}
	return err
}

// lessor holds the leader's lease deadlines. term is the term they were
// set for (0: this node is not the leader, and holds none).
type lessor struct {
	mu        sync.Mutex
	term      uint64
	since     time.Time // when this node took office as leader
	deadlines map[int64]time.Time
	// queue orders the deadlines (a min-heap), so the expiry loop looks
	// only at leases whose deadline passed, not at every lease; an entry
	// whose lease's deadline moved or whose lease is gone is stale and
	// dropped when it reaches the top.
	queue deadlineQueue
	// late are the leases found past their deadline, until revoked.
	late map[int64]struct{}
	// revoking holds the leases whose revoke the expiry loop proposed, and
	// when: one is proposed again only an election timeout later.
	revoking map[int64]time.Time
	// overdue is the set of leases past their deadline as of the expiry
	// loop's last round (nil: none), read without the lock by ranges, which
	// hide their keys.
	overdue atomic.Pointer[map[int64]struct{}]
}

// leaseOverdue reports whether this node leads and lease id's deadline
// has passed: its keys are hidden from reads until its revoke applies.
func (c *Core) leaseOverdue(id int64, now time.Time) bool {
	l := &c.lessor
	l.mu.Lock()
	defer l.mu.Unlock()
	d, ok := l.deadlines[id]
	return ok && !d.After(now)
}

// overdueLeases is the set of leases past their deadline as of the expiry
// loop's last round, for ranges; nil when there are none.
func (c *Core) overdueLeases() map[int64]struct{} {
	if p := c.lessor.overdue.Load(); p != nil {
		return *p
	}
	return nil
}

// leaderTerm returns the term this node leads, refreshing the lessor on a
// change of term: a new leader extends every lease to now + TTL + one
// election timeout, since the old leader's keep-alives are not known here.
// It returns 0 when this node is not the leader.
func (c *Core) leaderTerm(now time.Time) uint64 {
	st := c.node.Status()
	l := &c.lessor
	l.mu.Lock()
	defer l.mu.Unlock()
	if st.State != raft.StateLeader {
		l.term, l.deadlines, l.revoking, l.queue, l.late = 0, nil, nil, nil, nil
		l.overdue.Store(nil)
		return 0
	}
	if l.term == st.Term {
		return l.term
	}
	leases := c.store.Leases()
	l.term, l.since = st.Term, now
	l.deadlines = make(map[int64]time.Time, len(leases))
	l.revoking = map[int64]time.Time{}
	l.late = map[int64]struct{}{}
	l.overdue.Store(nil)
	grace := c.node.ElectionTimeout()
	for _, ls := range leases {
		l.deadlines[ls.ID] = now.Add(time.Duration(ls.TTL)*time.Second + grace)
	}
	l.rebuild()
	return l.term
}

// setDeadline records lease id's deadline (l.mu held).
func (l *lessor) setDeadline(id int64, d time.Time) {
	l.deadlines[id] = d
	heap.Push(&l.queue, leaseDeadline{at: d, id: id})
	if len(l.queue) > 2*len(l.deadlines)+1024 {
		l.rebuild() // keep-alives left too many stale entries
	}
}

// rebuild makes the queue hold exactly the current deadlines.
func (l *lessor) rebuild() {
	l.queue = l.queue[:0]
	for id, d := range l.deadlines {
		l.queue = append(l.queue, leaseDeadline{at: d, id: id})
	}
	heap.Init(&l.queue)
}

// leaseDeadline is an entry of the lessor's queue.
type leaseDeadline struct {
	at time.Time
	id int64
}

// deadlineQueue is a min-heap of deadlines (container/heap).
type deadlineQueue []leaseDeadline

func (q deadlineQueue) Len() int           { return len(q) }
func (q deadlineQueue) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q deadlineQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *deadlineQueue) Push(x any)        { *q = append(*q, x.(leaseDeadline)) }
func (q *deadlineQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// LeaseApplied is the state machine's hook after a lease grant or revoke
// is applied: the leader starts (or drops) the lease's deadline.
func (c *Core) LeaseApplied(id, ttl int64, granted bool) {
	l := &c.lessor
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.deadlines == nil {
		return
	}
	if granted {
		l.setDeadline(id, time.Now().Add(time.Duration(ttl)*time.Second))
	} else {
		delete(l.deadlines, id)
		delete(l.revoking, id)
		delete(l.late, id)
	}
}

// dueLeases returns up to max leases whose deadline passed and whose
// revoke is not in flight (one proposed less than an election timeout ago),
// marks them in flight, and publishes the set of overdue leases for reads.
func (c *Core) dueLeases(now time.Time, max int) []int64 {
	l := &c.lessor
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.due(now, c.node.ElectionTimeout(), max)
}

// due is dueLeases with l.mu held: retry is how long a proposed revoke is
// waited for before it is proposed again.
func (l *lessor) due(now time.Time, retry time.Duration, max int) []int64 {
	if l.deadlines == nil {
		return nil
	}
	for len(l.queue) > 0 && !l.queue[0].at.After(now) {
		top := heap.Pop(&l.queue).(leaseDeadline)
		if d, ok := l.deadlines[top.id]; ok && d.Equal(top.at) {
			l.late[top.id] = struct{}{}
		}
	}
	var out []int64
	var overdue map[int64]struct{}
	for id := range l.late {
		if d, ok := l.deadlines[id]; !ok || d.After(now) {
			delete(l.late, id)
			continue
		}
		if overdue == nil {
			overdue = make(map[int64]struct{}, len(l.late))
		}
		overdue[id] = struct{}{}
		if at, ok := l.revoking[id]; (ok && now.Sub(at) < retry) || len(out) == max {
			continue
		}
		out = append(out, id)
		l.revoking[id] = now
	}
	if overdue == nil {
		l.overdue.Store(nil)
	} else {
		l.overdue.Store(&overdue)
	}
	return out
}

// LeaseStatus is a lease's state: its granted TTL, the seconds it has left
// (the granted TTL when this node does not lead), and its keys.
type LeaseStatus struct {
	ID, TTL, GrantedTTL int64
	Keys                [][]byte
}

// LeaseGrant creates a lease of ttl seconds; id 0 lets the node choose.
// Any authenticated caller may grant.
func (c *Core) LeaseGrant(ctx context.Context, ttl, id int64) (int64, int64, error) {
	if _, err := c.authenticated(ctx); err != nil {
		return 0, 0, err
	}
	if err := c.limits.checkLeaseTTL(ttl); err != nil {
		return 0, 0, err
	}
	if id < 0 {
		return 0, 0, invalidf("lease id must not be negative")
	}
	if n := c.store.LeaseCount(); n >= c.limits.MaxLeases {
		return 0, 0, Errorf(ResourceExhausted, "%d leases exist, the max-leases limit", n)
	}
	ctx, cancel := c.requestContext(ctx)
	defer cancel()
	// A lease takes memory as a key does (engine.LeaseOverhead).
	held, err := c.mem.admit(ctx, c.stopC, engine.LeaseOverhead)
	if err != nil {
		return 0, 0, err
	}
	defer c.mem.release(held)
	for attempt := 0; ; attempt++ {
		lid := id
		if lid == 0 {
			lid = rand.Int64N(1<<62) + 1
		}
		data, err := command.EncodeLeaseGrant(lid, ttl)
		if err != nil {
			return 0, 0, err
		}
		_, err = c.proposeAlone(ctx, data)
		if err == nil {
			return lid, ttl, nil
		}
		if err = leaseError(err); id != 0 || err != ErrLeaseExists || attempt == 3 {
			return 0, 0, err
		}
	}
}

// LeaseRevoke deletes lease id and its keys at one revision; the caller
// must be allowed to write every attached key. It returns the revision.
func (c *Core) LeaseRevoke(ctx context.Context, id int64) (int64, error) {
	authRev := c.authRevision()
	if _, err := c.authenticated(ctx); err != nil {
		return 0, err
	}
	_, keys, ok := c.store.Lease(id, true)
	if !ok {
		return 0, ErrLeaseNotFound
	}
	for _, k := range keys {
		if err := c.authorize(ctx, auth.Write, k, nil); err != nil {
			return 0, err
		}
	}
	data, err := command.EncodeLeaseRevoke(id, false)
	if err != nil {
		return 0, err
	}
	ctx, cancel := c.requestContext(ctx)
	defer cancel()
	r, err := c.proposeAlone(ctx, command.StampAuthRevision(data, authRev))
	if err != nil {
		return 0, leaseError(err)
	}
	return r.Res.Revision, nil
}

// LeaseKeepAlive renews lease id to its full TTL and returns it. Only the
// leader renews: a follower answers with the not-leader error naming it.
func (c *Core) LeaseKeepAlive(ctx context.Context, id int64) (int64, error) {
	if _, err := c.authenticated(ctx); err != nil {
		return 0, err
	}
	now := time.Now()
	if c.leaderTerm(now) == 0 {
		return 0, c.node.NotLeaderError()
	}
	ttl, _, ok := c.store.Lease(id, false)
	if !ok {
		return 0, ErrLeaseNotFound
	}
	l := &c.lessor
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.deadlines == nil {
		return 0, c.node.NotLeaderError()
	}
	if d, ok := l.deadlines[id]; ok && !d.After(now) {
		// Too late: the lease expired and its revoke is (or is about to
		// be) proposed; its keys are already hidden.
		return 0, ErrLeaseNotFound
	}
	l.setDeadline(id, now.Add(time.Duration(ttl)*time.Second))
	return ttl, nil
}

// LeaseTimeToLive reports lease id; with keys, its attached keys, each of
// which the caller must be allowed to read. Only the leader knows how long
// a lease has left: a follower answers with the not-leader error naming
// it, as for keep-alives.
func (c *Core) LeaseTimeToLive(ctx context.Context, id int64, keys bool) (LeaseStatus, error) {
	if _, err := c.authenticated(ctx); err != nil {
		return LeaseStatus{}, err
	}
	now := time.Now()
	if c.leaderTerm(now) == 0 {
		return LeaseStatus{}, c.node.NotLeaderError()
	}
	ttl, attached, ok := c.store.Lease(id, keys)
	if !ok {
		return LeaseStatus{}, ErrLeaseNotFound
	}
	for _, k := range attached {
		if err := c.authorize(ctx, auth.Read, k, nil); err != nil {
			return LeaseStatus{}, err
		}
	}
	st := LeaseStatus{ID: id, TTL: ttl, GrantedTTL: ttl, Keys: attached}
	c.lessor.mu.Lock()
	if d, ok := c.lessor.deadlines[id]; ok {
		// A new leader's grace (one election timeout past the TTL) is
		// its own margin, not time the lease was granted.
		st.TTL = min(max(int64(d.Sub(now).Round(time.Second)/time.Second), 0), ttl)
	}
	c.lessor.mu.Unlock()
	return st, nil
}

// Leases lists, by id, at most limit leases (max-range-limit when limit is
// 0 or larger) whose id is greater than after, and whether there are more.
func (c *Core) Leases(ctx context.Context, after int64, limit int) ([]int64, bool, error) {
	if _, err := c.authenticated(ctx); err != nil {
		return nil, false, err
	}
	if limit <= 0 || limit > c.limits.MaxRangeLimit {
		limit = c.limits.MaxRangeLimit
	}
	// A listing reads every lease once under the store's read lock: a
	// few run at a time, the others wait their turn.
	select {
	case c.leaseLists <- struct{}{}:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	defer func() { <-c.leaseLists }()
	ids, more := c.store.LeasePage(after, limit)
	return ids, more, nil
}

// maxLeaseLists is how many lease listings run at once.
const maxLeaseLists = 2

func (l *Limits) checkLeaseTTL(ttl int64) error {
	if ttl <= 0 {
		return invalidf("lease ttl must be positive")
	}
	if ttl > int64(l.MaxTTL/time.Second) {
		return invalidf("lease ttl %ds is over the max-ttl limit of %s", ttl, l.MaxTTL)
	}
	return nil
}

func (l *Limits) checkTTL(ttl time.Duration) error {
	if ttl < 0 {
		return invalidf("ttl must not be negative")
	}
	if ttl > l.MaxTTL {
		return invalidf("ttl %s is over the max-ttl limit of %s", ttl, l.MaxTTL)
	}
	return nil
}

// String names a lease status for logs.
func (s LeaseStatus) String() string {
	return fmt.Sprintf("lease %x ttl %d/%d", s.ID, s.TTL, s.GrantedTTL)
}
