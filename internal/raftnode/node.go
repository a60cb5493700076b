package raftnode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvdb/kvdb/internal/raftnode/snap"
	"github.com/kvdb/kvdb/internal/raftnode/wal"
)

// StateMachine is what the node applies committed entries to. Apply,
// Snapshot and Restore are called from one goroutine at a time, in log order.
type StateMachine interface {
	// Apply applies the command of the committed entry at index. data is nil
	// for entries that carry no command (raft's empty entries, membership
	// changes); the machine must still record index as applied. The result
	// is handed to the proposer waiting for the entry, if any.
	Apply(index uint64, data []byte) any
	// AppliedIndex is the index of the last entry applied.
	AppliedIndex() uint64
	// Snapshot returns a point-in-time view at AppliedIndex. It must be cheap
	// to take: it is streamed to disk while the machine keeps applying.
	Snapshot() Snapshot
	// Restore replaces the machine's whole state with a stream written by a
	// Snapshot's WriteTo.
	Restore(r io.Reader) error
}

// SnapshotVerifier is a StateMachine that can check a snapshot stream
// without applying it. A snapshot received from the leader is checked
// while it is stored, before raft is told of it: a stream that could not
// be restored is refused (the sender tries again later) instead of leaving
// a log that names a snapshot this member cannot load.
type SnapshotVerifier interface {
	VerifySnapshot(r io.Reader) error
}

// Snapshot is a point-in-time view of a StateMachine.
type Snapshot interface {
	Index() uint64
	io.WriterTo
}

// Status is a node's raft position, read without stopping the raft loop.
type Status struct {
	ID        uint64
	Leader    uint64
	Term      uint64
	State     raft.StateType
	Commit    uint64
	Applied   uint64
	LastIndex uint64
	// SnapshotIndex is the index of the newest snapshot on disk.
	SnapshotIndex uint64
}

// idHeaderLen prefixes every proposed entry with the request id its
// proposer waits on.
const idHeaderLen = 8

type proposal struct {
	id   uint64
	data []byte
}

type readRequest struct {
	ch chan readResult
}

type readResult struct {
	index uint64
	err   error
}

// applyBatch is one Ready's committed entries, or a snapshot to restore.
type applyBatch struct {
	entries    []*raftpb.Entry
	confStates map[uint64]*raftpb.ConfState
	snapshot   *raftpb.Snapshot
}

// Node is one raft member. All methods are safe for concurrent use.
type Node struct {
	cfg   Config
	log   *slog.Logger
	sm    StateMachine
	rn    *raft.RawNode
	store *raft.MemoryStorage
	wal   *wal.WAL
	snaps *snap.Snapshotter
	lock  *dirLock
	waits *waitRegistry
	reads appliedWaiters
	// pulse is closed and replaced every expireInterval (expireLoop):
	// a reader with a coarse deadline wakes on it to check the time
	// instead of arming a timer per read (ReadIndexWithin).
	pulse  atomic.Pointer[chan struct{}]
	idBase uint64
	idSeq  atomic.Uint64

	members   *membership
	proposeC  chan proposal
	confC     chan confRequest
	transferC chan transferRequest
	removed   atomic.Bool
	// confPending is the request id of a membership change not yet applied;
	// confPendingTicks (raft loop only) lets a lost one expire.
	confPending      atomic.Uint64
	confPendingTicks int
	readC            chan readRequest
	stepC            chan *raftpb.Message
	reportC          chan func(*raft.RawNode)
	applyC           chan applyBatch

	// peerClients maps a member id to the client address it told us.
	peerClients sync.Map
	// lastContact (raft loop only) is when each peer's last message came.
	lastContact map[uint64]time.Time
	// The WAL goroutine (walloop.go): its work queue, the responses it
	// releases to the raft loop once their records are durable, and its
	// stop and done signals. walHS is the last HardState it saved.
	walq    *walQueue
	respC   chan []*raftpb.Message
	walStop chan struct{}
	walDone chan struct{}
	walHS   *raftpb.HardState

	// A full disk (diskfull.go): diskFullErr is non-nil while writes are
	// refused; walStalled while a WAL write waits for space (the raft loop
	// reads it); reserveHeld and stalled belong to the WAL goroutine.
	diskFullErr atomic.Pointer[DiskFullError]
	walStalled  atomic.Bool
	reserveHeld bool
	stalled     *walGroup

	// leaderFrom (raft loop only) is, while this node leads, the index of
	// the empty entry raft appended when it was elected: the first entry of
	// its term. No read is answered below it (readLoop.resolve).
	leaderFrom uint64

	// Published by the raft loop after every iteration.
	term, lead, commit, lastIndex, snapIndex atomic.Uint64
	// lastSnapSize is the size of the last snapshot file written.
	lastSnapSize atomic.Uint64
	state        atomic.Uint32

	// localRead (readlocal.go) is the read index a lone voter's leader may
	// use without a round through the raft loop; 0 when there is none.
	// solo and soloDirty belong to the raft loop.
	localRead atomic.Uint64
	solo      bool
	soloDirty bool

	stopOnce sync.Once
	stopC    chan struct{}
	raftDone chan struct{}
	done     chan struct{}
	errMu    sync.Mutex
	stopErr  error
}

// Start opens (or creates) the data directory, replays the snapshot and WAL
// into sm, and starts the raft and apply loops.
func Start(cfg Config, sm StateMachine) (*Node, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:         cfg,
		log:         cfg.Logger.With("component", "raft", "member", fmt.Sprintf("%x", cfg.ID)),
		sm:          sm,
		waits:       newWaitRegistry(cfg.Metrics.ProposalFailed),
		members:     newMembership(),
		proposeC:    make(chan proposal, 4096),
		confC:       make(chan confRequest),
		transferC:   make(chan transferRequest),
		readC:       make(chan readRequest, 4096),
		stepC:       make(chan *raftpb.Message, 4096),
		reportC:     make(chan func(*raft.RawNode), 256),
		walq:        newWALQueue(),
		respC:       make(chan []*raftpb.Message, 64),
		walStop:     make(chan struct{}),
		walDone:     make(chan struct{}),
		applyC:      make(chan applyBatch, 256),
		lastContact: make(map[uint64]time.Time),
		stopC:       make(chan struct{}),
		raftDone:    make(chan struct{}),
		done:        make(chan struct{}),
		// Ids are unique per node across restarts: the member id's low 16
		// bits, then the start time in ms, then a sequence.
		idBase: (cfg.ID&0xffff)<<48 | (uint64(time.Now().UnixMilli())&0xffffffffff)<<8,
	}
	if err := n.open(); err != nil {
		return nil, err
	}
	// MemoryStorage.InitialState is unsynchronised; read it before the raft
	// loop starts writing.
	_, cs, err := n.store.InitialState()
	if err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	pulse := make(chan struct{})
	n.pulse.Store(&pulse)
	go n.applyLoop(proto.Clone(cs).(*raftpb.ConfState))
	go n.walLoop()
	go n.raftLoop()
	go n.expireLoop()
	return n, nil
}

// ID is this node's raft member id.
func (n *Node) ID() uint64 { return n.cfg.ID }

// ClusterID is the id of the cluster this node belongs to.
func (n *Node) ClusterID() uint64 { return n.cfg.ClusterID }

// Peer returns member id when it may send raft traffic to this node: a
// current voter or learner other than this node or, while this node joins
// and is not in the configuration yet, a member the cluster listed when it
// admitted this node. Anyone else is refused before raft sees the message.
func (n *Node) Peer(id uint64) (Member, bool) {
	if id == 0 || id == n.cfg.ID || n.removed.Load() {
		return Member{}, false
	}
	if n.members.isMember(id) {
		m, _ := n.members.get(id)
		m.ID = id
		return m, true
	}
	if n.cfg.Join && !n.members.isMember(n.cfg.ID) {
		for _, m := range n.cfg.JoinMembers {
			if m.ID == id {
				return m, true
			}
		}
	}
	return Member{}, false
}

// Members lists the current members with their names and addresses.
func (n *Node) Members() []MemberStatus { return n.members.list() }

// Member returns what is known of member id.
func (n *Node) Member(id uint64) (Member, bool) { return n.members.get(id) }

// ClientAddress is where clients reach this node (Config.ClientAddress).
func (n *Node) ClientAddress() string { return n.cfg.ClientAddress }

// SetPeerClientAddress records the client address member id announced.
func (n *Node) SetPeerClientAddress(id uint64, address string) {
	n.peerClients.Store(id, address)
}

// ClientAddressOf returns where clients reach member id: this node's own
// client address, the one a peer announced over the transport, or "" when
// it has not been heard yet.
func (n *Node) ClientAddressOf(id uint64) string {
	if id == n.cfg.ID {
		return n.cfg.ClientAddress
	}
	if a, ok := n.peerClients.Load(id); ok {
		return a.(string)
	}
	return ""
}

// PeerReachability is the leader's view of one follower.
type PeerReachability struct {
	// Active: the peer answered within the last election timeout (raft's
	// RecentActive, and a message heard: raft counts a member it has just
	// added as active before it ever answers).
	Active bool
	// LastContact is when the last message from the peer arrived; zero
	// when none arrived since this node started.
	LastContact time.Time
}

// Reachability returns, on the leader, its progress tracker's view of
// every other voter and learner; nil on a follower or when ctx ends first.
func (n *Node) Reachability(ctx context.Context) map[uint64]PeerReachability {
	ch := make(chan map[uint64]PeerReachability, 1)
	f := func(rn *raft.RawNode) {
		st := rn.Status()
		if st.RaftState != raft.StateLeader {
			ch <- nil
			return
		}
		out := make(map[uint64]PeerReachability, len(st.Progress))
		for id, pr := range st.Progress {
			if id != n.cfg.ID {
				out[id] = PeerReachability{Active: pr.RecentActive && n.heardRecently(id, time.Now()), LastContact: n.lastContact[id]}
			}
		}
		ch <- out
	}
	select {
	case n.reportC <- f:
	case <-ctx.Done():
		return nil
	case <-n.stopC:
		return nil
	}
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		return nil
	case <-n.stopC:
		return nil
	}
}

// Removed is true once this node has been removed from the cluster.
func (n *Node) Removed() bool { return n.removed.Load() }

// Status returns the node's last published raft position.
func (n *Node) Status() Status {
	return Status{
		ID:            n.cfg.ID,
		Leader:        n.lead.Load(),
		Term:          n.term.Load(),
		State:         raft.StateType(n.state.Load()),
		Commit:        n.commit.Load(),
		Applied:       n.reads.applied.Load(),
		LastIndex:     n.lastIndex.Load(),
		SnapshotIndex: n.snapIndex.Load(),
	}
}

// Stats returns the node's cumulative storage counters. Safe to call from
// any goroutine.
func (n *Node) Stats() Stats {
	ws := n.wal.Stats()
	return Stats{
		WALBytesWritten:  ws.BytesWritten,
		WALSyncs:         ws.Syncs,
		PendingProposals: n.waits.pending.Load(),
	}
}

// SyncWrites reports whether the node fsyncs its log before a write is
// acknowledged (Config.SyncWrites).
func (n *Node) SyncWrites() bool { return n.cfg.SyncWrites }

// Term is the current raft term.
func (n *Node) Term() uint64 { return n.term.Load() }

// Propose appends data to the replicated log and waits until it has been
// applied locally, returning the state machine's result. ctx bounds the
// wait; a proposal whose ctx expires may still be applied later.
func (n *Node) Propose(ctx context.Context, data []byte) (any, error) {
	p, err := n.Enqueue(data)
	if err != nil {
		return nil, err
	}
	return p.Wait(ctx)
}

// Proposal is a proposal handed to the raft loop whose result can be
// awaited once.
type Proposal struct {
	n  *Node
	id uint64
	ch chan result
}

// Enqueue hands data to the raft loop without waiting for it to commit.
// Proposals enqueued one after another by the same goroutine reach the log
// in that order (unless raft drops one). It fails at once with
// ErrOverloaded when a queue is full.
func (n *Node) Enqueue(data []byte) (*Proposal, error) {
	p, err := n.enqueue(data)
	if err != nil {
		n.cfg.Metrics.ProposalFailed(err)
	}
	return p, err
}

func (n *Node) enqueue(data []byte) (*Proposal, error) {
	ch := make(chan result, 1)
	id, err := n.enqueueWith(data, false, waiter{ch: ch})
	if err != nil {
		return nil, err
	}
	return &Proposal{n: n, id: id, ch: ch}, nil
}

// ProposalHeader is the room EnqueueFunc needs before a proposal's bytes.
const ProposalHeader = idHeaderLen

// EnqueueFunc hands a proposal to the raft loop like Enqueue and calls done
// exactly once with the state machine's result: on the apply loop when the
// entry is applied, or with an error when it cannot be (ErrStopped,
// ErrLeaderChanged, ErrProposalDropped), or with
// context.DeadlineExceeded once timeout has passed (the entry may still be
// applied later). done must be quick and must not block: it runs on the
// apply or the raft loop. When EnqueueFunc returns an error done is not
// called.
//
// buf is ProposalHeader bytes of room followed by the proposal, and
// belongs to the node from then on: the proposal is not copied.
//
// It spares a waiting goroutine, a channel and a timer per proposal, which
// Enqueue's Wait costs.
func (n *Node) EnqueueFunc(buf []byte, timeout time.Duration, done func(val any, err error)) error {
	if len(buf) < ProposalHeader {
		return fmt.Errorf("raftnode: a proposal of %d bytes has no room for its header", len(buf))
	}
	_, err := n.enqueueWith(buf, true, waiter{fn: done, deadline: time.Now().Add(timeout).UnixNano()})
	if err != nil {
		n.cfg.Metrics.ProposalFailed(err)
	}
	return err
}

// enqueueWith checks the node can take a proposal, registers wt as its
// waiter and hands it to the raft loop. When headed, data begins with
// ProposalHeader bytes of room for the id and is used as is.
func (n *Node) enqueueWith(data []byte, headed bool, wt waiter) (uint64, error) {
	if n.removed.Load() {
		return 0, ErrRemoved
	}
	select {
	case <-n.stopC:
		return 0, ErrStopped
	default:
	}
	if e := n.diskFullErr.Load(); e != nil {
		return 0, e
	}
	if n.waits.pending.Load() >= int64(n.cfg.MaxPendingProposals) {
		return 0, ErrOverloaded
	}
	if n.commit.Load() > n.reads.applied.Load()+n.cfg.MaxApplyBacklog {
		return 0, ErrOverloaded
	}
	id := n.idBase + n.idSeq.Add(1)
	buf := data
	if !headed {
		buf = make([]byte, idHeaderLen+len(data))
		copy(buf[idHeaderLen:], data)
	}
	binary.BigEndian.PutUint64(buf, id)

	n.waits.add(id, wt)
	var err error
	select {
	case n.proposeC <- proposal{id: id, data: buf}:
	case <-n.stopC:
		err = ErrStopped
	default:
		err = ErrOverloaded
	}
	if err != nil {
		return n.withdraw(id, wt, err)
	}
	if wt.fn != nil {
		// The node may have stopped meanwhile and failed its waiters
		// before this one was added (expireLoop sweeps once more after
		// done): fail it here if so; take makes sure only once.
		select {
		case <-n.done:
			n.waits.trigger(id, result{err: ErrStopped})
		default:
		}
	}
	return id, nil
}

// withdraw takes back the waiter of a proposal the raft loop did not
// take, and returns what enqueueWith returns. A node stopping meanwhile
// may have failed the waiter already: a callback has then had its answer,
// so the proposal counts as enqueued (its callback must not hear twice).
func (n *Node) withdraw(id uint64, wt waiter, err error) (uint64, error) {
	if _, ok := n.waits.take(id); ok || wt.fn == nil {
		return 0, err
	}
	return id, nil
}

// expireInterval is how often callbacks past their deadline are failed.
const expireInterval = 50 * time.Millisecond

// expireLoop fails EnqueueFunc callbacks whose timeout has passed, until
// the node is done. The apply loop fails every waiter as it ends; a
// callback added during that is failed by the sweep after done here, or,
// if added after that sweep, by enqueueWith itself.
func (n *Node) expireLoop() {
	t := time.NewTicker(expireInterval)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			next := make(chan struct{})
			close(*n.pulse.Swap(&next))
			n.waits.expire(now.UnixNano(), context.DeadlineExceeded)
		case <-n.done:
			n.waits.failAll(ErrStopped)
			return
		}
	}
}

// Wait waits until the proposal has been applied locally and returns the
// state machine's result. When ctx ends first the proposal may still be
// applied later.
func (p *Proposal) Wait(ctx context.Context) (any, error) {
	v, err := p.wait(ctx)
	if err != nil {
		p.n.cfg.Metrics.ProposalFailed(err)
	}
	return v, err
}

func (p *Proposal) wait(ctx context.Context) (any, error) {
	select {
	case r := <-p.ch:
		return r.val, r.err
	case <-ctx.Done():
		p.n.waits.cancel(p.id)
		return nil, ctx.Err()
	case <-p.n.done:
		return nil, ErrStopped
	}
}

// ReadIndex waits until the local state machine reflects every write
// committed before the call: it confirms leadership with a ReadIndex round
// (batched with other waiting readers) and then waits for the apply loop to
// reach the confirmed index. A lone voter's leader answers from its
// published commit index instead (readlocal.go), the same index raft's
// ReadIndex would give it, without the round through the raft loop.
func (n *Node) ReadIndex(ctx context.Context) error {
	return n.readIndex(ctx, time.Time{})
}

// ReadIndexWithin is ReadIndex bounded by timeout instead of a context
// deadline, for callers whose ctx has none: the time is checked at each
// pulse (expireInterval), so the bound is that coarse, and no timer is
// armed per read.
func (n *Node) ReadIndexWithin(ctx context.Context, timeout time.Duration) error {
	return n.readIndex(ctx, time.Now().Add(timeout))
}

// readIndex is ReadIndex, also bounded by deadline unless it is zero.
func (n *Node) readIndex(ctx context.Context, deadline time.Time) error {
	index := n.localRead.Load() // a lone voter's leader: no round (readlocal.go)
	if index == 0 {
		req := readRequest{ch: make(chan readResult, 1)}
		select {
		case n.readC <- req:
		case <-n.stopC:
			return ErrStopped
		default:
			return ErrOverloaded
		}
		r, err := awaitPulsed(n, ctx, req.ch, deadline)
		if err != nil {
			return err
		}
		if r.err != nil {
			return r.err
		}
		index = r.index
	}
	return n.waitApplied(ctx, index, deadline)
}

// WaitApplied waits until the apply loop has applied index.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	return n.waitApplied(ctx, index, time.Time{})
}

func (n *Node) waitApplied(ctx context.Context, index uint64, deadline time.Time) error {
	ch := n.reads.wait(index)
	if ch == nil {
		return nil
	}
	_, err := awaitPulsed(n, ctx, ch, deadline)
	return err
}

// awaitPulsed receives from ch unless ctx ends, the node stops or the
// deadline (none when zero; checked at each pulse) passes first.
func awaitPulsed[T any](n *Node, ctx context.Context, ch <-chan T, deadline time.Time) (T, error) {
	var zero T
	for {
		var pulse <-chan struct{}
		if !deadline.IsZero() {
			pulse = *n.pulse.Load()
		}
		select {
		case v := <-ch:
			return v, nil
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-n.done:
			return zero, ErrStopped
		case <-pulse:
			if !time.Now().Before(deadline) {
				return zero, context.DeadlineExceeded
			}
		}
	}
}

// Step hands a message received from a peer to raft.
func (n *Node) Step(ctx context.Context, m *raftpb.Message) error {
	if from := m.GetFrom(); from == raft.LocalAppendThread || from == raft.LocalApplyThread {
		return nil // only this node's own WAL goroutine speaks for its disk
	}
	select {
	case n.stepC <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopC:
		return ErrStopped
	}
}

// ReportUnreachable tells raft a peer could not be reached.
func (n *Node) ReportUnreachable(id uint64) {
	n.report(func(rn *raft.RawNode) { rn.ReportUnreachable(id) })
}

// ReportSnapshot tells raft how sending a snapshot to a peer ended.
func (n *Node) ReportSnapshot(id uint64, failed bool) {
	status := raft.SnapshotFinish
	if failed {
		status = raft.SnapshotFailure
	}
	n.report(func(rn *raft.RawNode) { rn.ReportSnapshot(id, status) })
}

// report queues f for the raft loop, dropping it when the queue is full:
// reports are hints raft recovers from on its own.
func (n *Node) report(f func(*raft.RawNode)) {
	select {
	case n.reportC <- f:
	default:
	}
}

// Done is closed once the node has fully stopped.
func (n *Node) Done() <-chan struct{} { return n.done }

// Stop stops the loops, waits for in-flight applies, syncs and closes the
// WAL. Waiters still pending get ErrStopped. It returns the first error
// either loop ended with.
func (n *Node) Stop() error {
	select {
	case <-n.stopC:
	default:
		n.HandOffLeadership()
	}
	n.stopOnce.Do(func() { close(n.stopC) })
	<-n.done
	n.errMu.Lock()
	defer n.errMu.Unlock()
	return n.stopErr
}

// fail records a fatal loop error and stops the node.
func (n *Node) fail(err error) {
	n.log.Error("raft node failed; stopping", "err", err)
	n.errMu.Lock()
	if n.stopErr == nil {
		n.stopErr = err
	}
	n.errMu.Unlock()
	n.stopOnce.Do(func() { close(n.stopC) })
}

// errStop is returned internally when a loop sees stopC closed.
var errStop = errors.New("raftnode: stopping")

// HandOffLeadership moves leadership to the most up-to-date follower before
// a leader stops, so the cluster does not wait an election timeout. It does
// nothing on a follower or a single voter.
func (n *Node) HandOffLeadership() {
	if raft.StateType(n.state.Load()) != raft.StateLeader || len(n.members.list()) < 2 {
		return
	}
	timeout := 2 * time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	target, err := n.TransferLeadership(ctx, 0)
	if err != nil {
		n.log.Warn("could not hand leadership over before stopping", "err", err)
		return
	}
	n.log.Info("handed leadership over before stopping", "to", fmt.Sprintf("%x", target), "duration", time.Since(start).Round(time.Millisecond))
}

// Kill stops the node at once, without handing leadership over: what a
// crash looks like to the rest of the cluster. The WAL is still closed
// cleanly; tests that need lost unsynced writes kill a real process.
func (n *Node) Kill() error {
	n.stopOnce.Do(func() { close(n.stopC) })
	<-n.done
	n.errMu.Lock()
	defer n.errMu.Unlock()
	return n.stopErr
}
