package raftnode

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// maxProposalsPerIteration bounds how many queued proposals one loop
// iteration hands to raft, so ticks and peer messages are never starved.
const maxProposalsPerIteration = 1024

// raftLoop is the only goroutine that touches n.rn. It never waits for the
// disk: appends go to the WAL goroutine (walloop.go).
func (n *Node) raftLoop() {
	defer close(n.raftDone)
	ticks := n.cfg.Ticks
	if ticks == nil {
		ticker := time.NewTicker(n.cfg.TickInterval)
		defer ticker.Stop()
		ticks = ticker.C
	}
	rl := &readLoop{}

	// A lone voter need not wait an election timeout to lead: it campaigns
	// as soon as it has applied what it committed (a fresh node's bootstrap
	// membership first; raft refuses to campaign over unapplied membership
	// changes).
	campaigned := !n.singleVoter()
	n.soloDirty = true
	defer n.localRead.Store(0)
	drain := func() error {
		for {
			for !n.walStalled.Load() && n.rn.HasReady() {
				if err := n.handleReady(rl); err != nil {
					return err
				}
			}
			n.publishLocalRead()
			if campaigned {
				return nil
			}
			st := n.rn.Status()
			if st.RaftState == raft.StateLeader {
				campaigned = true
				return nil
			}
			if st.Applied < st.GetCommit() {
				return nil
			}
			campaigned = true
			_ = n.rn.Campaign()
		}
	}
	if err := drain(); err != nil {
		n.fail(err)
		n.shutdownRaft()
		return
	}
	var lastLead uint64
	for {
		select {
		case <-ticks:
			n.rn.Tick()
			rl.tick(n)
			if n.confPending.Load() != 0 {
				if n.confPendingTicks++; n.confPendingTicks > 3*n.cfg.ElectionTicks {
					n.confPending.Store(0) // lost with a leader change
				}
			}
		case ms := <-n.respC:
			// Responses the WAL goroutine released once their records were
			// durable: this node's own append acknowledgements.
			for _, m := range ms {
				_ = n.rn.Step(m)
			}
		case req := <-n.confC:
			n.proposeConfChange(req)
		case req := <-n.transferC:
			n.transferLeadership(req)
		case p := <-n.proposeC:
			// Let the handlers that are about to propose run first: on a
			// busy node this turns many one-entry Readies (one WAL write
			// each) into a few large ones.
			if len(n.proposeC) < maxProposalsPerIteration {
				runtime.Gosched()
			}
			n.propose(p)
			for i := 0; i < maxProposalsPerIteration; i++ {
				select {
				case p := <-n.proposeC:
					n.propose(p)
					continue
				default:
				}
				break
			}
		case r := <-n.readC:
			rl.enqueue(r)
		case m := <-n.stepC:
			// A message heard is contact, even one a stalled node drops.
			n.lastContact[m.GetFrom()] = time.Now()
			if !n.walStalled.Load() || !dropWhileStalled(m) {
				_ = n.rn.Step(m)
			}
		case f := <-n.reportC:
			f(n.rn)
		case <-n.stopC:
			n.shutdownRaft()
			return
		}
		rl.maybeSend(n)
		// One step can make more work ready at once (a leader's own append
		// acknowledgement commits entries), so drain until raft is idle.
		if err := drain(); err != nil {
			n.fail(err)
			n.shutdownRaft()
			return
		}
		if lead := n.lead.Load(); lead != lastLead {
			n.log.Info("leader changed", "leader", fmt.Sprintf("%x", lead), "term", n.term.Load())
			n.cfg.Metrics.LeaderChanged(lead)
			if lastLead != raft.None {
				// Proposals handed to the old leader may be lost with it, and
				// raft never says so: answer their proposers now rather than
				// at their deadline. The outcome is unknown (an entry the
				// old leader replicated may still commit), which is what
				// ErrLeaderChanged says.
				n.waits.failAll(ErrLeaderChanged)
			}
			lastLead = lead
		}
	}
}

func (n *Node) singleVoter() bool {
	st := n.rn.Status()
	voters := st.Config.Voters.IDs()
	_, self := voters[n.cfg.ID]
	return len(voters) == 1 && self
}

func (n *Node) propose(p proposal) {
	if e := n.diskFullErr.Load(); e != nil {
		n.waits.trigger(p.id, result{err: e})
		return
	}
	if err := n.rn.Propose(p.data); err != nil {
		n.waits.trigger(p.id, result{err: ErrProposalDropped})
	}
}

// handleReady runs the Ready contract described in doc.go. It never waits
// for the disk: the log append goes to the WAL goroutine, whose responses
// come back on respC once the records are durable.
func (n *Node) handleReady(rl *readLoop) error {
	rd := n.rn.Ready()

	becameLeader := false
	if rd.SoftState != nil {
		n.soloDirty = true
		n.localRead.Store(0)
		n.lead.Store(rd.SoftState.Lead)
		n.state.Store(uint32(rd.SoftState.RaftState))
		becameLeader = rd.SoftState.RaftState == raft.StateLeader
		n.leaderFrom = 0
	}
	if hs := rd.HardState; hs != nil {
		// Published before the entries it commits are applied, so no one
		// sees applied > commit.
		n.term.Store(hs.GetTerm())
		n.commit.Store(hs.GetCommit())
	}
	out := rd.Messages[:0:0]
	for _, m := range rd.Messages {
		switch m.GetTo() {
		case raft.LocalAppendThread:
			// 2. Persist, on the WAL goroutine.
			if becameLeader {
				n.leaderFrom = firstOfTerm(m.GetEntries(), n.term.Load())
			}
			n.walq.push(walItem{app: m})
		case raft.LocalApplyThread:
			// 4. Committed entries to the apply loop.
			n.handOff(m)
		default:
			// 1. Messages that need nothing persisted leave at once: a
			// leader's MsgApp goes out before its own append is durable.
			out = append(out, m)
		}
	}
	n.cfg.Transport.Send(out)
	if becameLeader && n.leaderFrom == 0 {
		// raft appends the empty entry when it makes this node leader, so
		// the Ready that says so carries it; should it ever not, reads
		// wait for everything already in the log, the elected term's
		// entry aside (everything of earlier terms, by the time this
		// node could win its vote).
		n.leaderFrom, _ = n.store.LastIndex()
		n.log.Warn("elected without an entry of the new term in the Ready", "term", n.term.Load(), "reads_from", n.leaderFrom)
	}
	for _, rs := range rd.ReadStates {
		rl.resolve(rs, n.leaderFrom)
	}
	return nil
}

// firstOfTerm returns the index of the first entry of term in ents, or 0.
func firstOfTerm(ents []*raftpb.Entry, term uint64) uint64 {
	for _, e := range ents {
		if e.GetTerm() == term {
			return e.GetIndex()
		}
	}
	return 0
}

// handOff queues a MsgStorageApply's committed entries for the apply loop.
// Membership changes take effect in raft here, in the goroutine that owns
// it, and raft hears at once that the entries are applied: they are in the
// apply loop's queue, which applies them in order (raft only uses its
// applied index to pace its own bookkeeping; readers wait on the apply
// loop's index).
func (n *Node) handOff(m *raftpb.Message) {
	ents := m.GetEntries()
	if len(ents) > 0 {
		b := applyBatch{entries: ents}
		for _, e := range ents {
			if cs := n.applyConfChange(e); cs != nil {
				if b.confStates == nil {
					b.confStates = make(map[uint64]*raftpb.ConfState)
				}
				b.confStates[e.GetIndex()] = cs
			}
		}
		n.sendApply(b)
	}
	for _, r := range m.GetResponses() {
		_ = n.rn.Step(r)
	}
}

// applyConfChange applies a committed membership change to raft and returns
// the resulting ConfState, or nil when e is not a membership change.
func (n *Node) applyConfChange(e *raftpb.Entry) *raftpb.ConfState {
	var cc raftpb.ConfChangeI
	switch e.GetType() {
	case raftpb.EntryConfChange:
		var c raftpb.ConfChange
		if err := proto.Unmarshal(e.GetData(), &c); err != nil {
			panic(fmt.Sprintf("raftnode: committed conf change at %d does not decode: %v", e.GetIndex(), err))
		}
		cc = &c
	case raftpb.EntryConfChangeV2:
		var c raftpb.ConfChangeV2
		if err := proto.Unmarshal(e.GetData(), &c); err != nil {
			panic(fmt.Sprintf("raftnode: committed conf change at %d does not decode: %v", e.GetIndex(), err))
		}
		cc = &c
	default:
		return nil
	}
	cs := n.rn.ApplyConfChange(cc)
	// No local reads past a membership change until the raft loop has
	// looked at the new configuration.
	n.soloDirty = true
	n.localRead.Store(0)
	// The one log line per membership change, on every member.
	var changes []string
	for _, c := range cc.AsV2().GetChanges() {
		changes = append(changes, fmt.Sprintf("%s %x", c.GetType(), c.GetNodeId()))
	}
	n.log.Info("membership changed", "index", e.GetIndex(), "changes", changes,
		"voters", hexIDs(cs.GetVoters()), "learners", hexIDs(cs.GetLearners()))
	return cs
}

// hexIDs formats member ids in hex, as every other log line and member
// list show them.
func hexIDs(ids []uint64) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = fmt.Sprintf("%x", id)
	}
	return out
}

// sendApply queues a batch for the apply loop. The queue is bounded; when
// the apply loop falls behind the raft loop waits here, which is the
// backpressure that keeps committed-but-unapplied entries bounded.
func (n *Node) sendApply(b applyBatch) {
	n.applyC <- b
}

// shutdownRaft ends the raft side: the WAL goroutine stops, the apply loop
// finishes what it was handed, the WAL is synced and closed.
func (n *Node) shutdownRaft() {
	close(n.walStop)
	<-n.walDone
	close(n.applyC)
	if err := n.wal.Close(); err != nil {
		n.log.Error("closing WAL", "err", err)
	}
	if err := n.cfg.Transport.Close(); err != nil {
		n.log.Warn("closing transport", "err", err)
	}
}

// readLoop batches linearizable reads: every reader waiting when a ReadIndex
// round starts is answered by that round, so the cost of confirming
// leadership is shared by all of them.
type readLoop struct {
	queued   []readRequest
	inflight []readRequest
	seq      uint64
	ctx      [8]byte
	ticks    int
}

func (rl *readLoop) enqueue(r readRequest) { rl.queued = append(rl.queued, r) }

func (rl *readLoop) maybeSend(n *Node) {
	if len(rl.inflight) > 0 || len(rl.queued) == 0 {
		return
	}
	if n.lead.Load() == raft.None {
		rl.failQueued(ErrNoLeader)
		return
	}
	rl.inflight, rl.queued = rl.queued, rl.inflight[:0]
	rl.seq++
	rl.ticks = 0
	binary.BigEndian.PutUint64(rl.ctx[:], rl.seq)
	n.rn.ReadIndex(append([]byte(nil), rl.ctx[:]...))
}

// resolve answers the round rs ends. On the leader the index is at least
// leaderFrom, the first entry of its term: raft answers a lone voter's
// ReadIndex with its commit index at once, even before an entry of the
// leader's term is committed (with more voters it waits for one), and
// after a restart that commit index can be behind writes that were
// acknowledged: the WAL does not wait to record a HardState that only
// moves the commit index (walloop.go), so the log can hold committed,
// applied entries past the commit index recovered. They commit again with
// the leader's first entry, and reading once that is applied sees them.
func (rl *readLoop) resolve(rs raft.ReadState, leaderFrom uint64) {
	if len(rs.RequestCtx) != 8 || binary.BigEndian.Uint64(rs.RequestCtx) != rl.seq {
		return
	}
	index := max(rs.Index, leaderFrom)
	for _, r := range rl.inflight {
		r.ch <- readResult{index: index}
	}
	clear(rl.inflight)
	rl.inflight = rl.inflight[:0]
}

// tick fails a round that got no answer within an election timeout: the
// request or its answer was lost with a leader change.
func (rl *readLoop) tick(n *Node) {
	if len(rl.inflight) == 0 {
		return
	}
	rl.ticks++
	if rl.ticks > n.cfg.ElectionTicks {
		for _, r := range rl.inflight {
			r.ch <- readResult{err: ErrNoLeader}
		}
		clear(rl.inflight)
		rl.inflight = rl.inflight[:0]
	}
}

func (rl *readLoop) failQueued(err error) {
	for _, r := range rl.queued {
		r.ch <- readResult{err: err}
	}
	clear(rl.queued)
	rl.queued = rl.queued[:0]
}
