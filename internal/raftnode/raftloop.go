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

// raftLoop is the only goroutine that touches n.rn and n.wal.
func (n *Node) raftLoop() {
	defer close(n.raftDone)
	ticks := n.cfg.Ticks
	if ticks == nil {
		ticker := time.NewTicker(n.cfg.TickInterval)
		defer ticker.Stop()
		ticks = ticker.C
	}
	var syncTick <-chan time.Time
	if !n.cfg.SyncWrites {
		t := time.NewTicker(n.cfg.SyncInterval)
		defer t.Stop()
		syncTick = t.C
	}
	rl := &readLoop{}

	// A lone voter need not wait an election timeout to lead. A fresh node's
	// bootstrap membership must be applied first, so drain that Ready.
	if n.rn.HasReady() {
		if err := n.handleReady(rl); err != nil {
			n.fail(err)
			n.shutdownRaft()
			return
		}
	}
	if n.singleVoter() {
		_ = n.rn.Campaign()
	}
	var lastLead uint64
	for {
		select {
		case <-ticks:
			n.rn.Tick()
			rl.tick(n)
			if n.diskFullErr.Load() != nil {
				if n.diskFullTicks++; time.Duration(n.diskFullTicks)*n.cfg.TickInterval >= diskFullRetry {
					n.diskFullTicks = 0
					if err := n.retryDiskFull(rl); err != nil {
						n.fail(err)
						n.shutdownRaft()
						return
					}
				}
			}
			if n.confPending.Load() != 0 {
				if n.confPendingTicks++; n.confPendingTicks > 3*n.cfg.ElectionTicks {
					n.confPending.Store(0) // lost with a leader change
				}
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
			if n.stalled == nil || !dropWhileStalled(m) {
				_ = n.rn.Step(m)
			}
		case f := <-n.reportC:
			f(n.rn)
		case d := <-n.snapDoneC:
			if err := n.snapshotSaved(d); err != nil {
				n.fail(err)
				n.shutdownRaft()
				return
			}
		case <-syncTick:
			if err := n.wal.Sync(); err != nil {
				if IsNoSpace(err) {
					n.enterDiskFull(err)
					break
				}
				n.fail(fmt.Errorf("raftnode: background WAL sync: %w", err))
				n.shutdownRaft()
				return
			}
		case ch := <-n.syncC:
			err := n.wal.Sync()
			if IsNoSpace(err) {
				n.enterDiskFull(err)
			}
			ch <- err
		case <-n.stopC:
			n.shutdownRaft()
			return
		}
		rl.maybeSend(n)
		// Advance can make more work ready at once (a leader's own append
		// acknowledgement commits entries), so drain until raft is idle.
		for n.stalled == nil && n.rn.HasReady() {
			if err := n.handleReady(rl); err != nil {
				n.fail(err)
				n.shutdownRaft()
				return
			}
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

// handleReady runs the Ready contract described in doc.go. When the WAL
// write fails for lack of space the Ready stalls (see doc.go, "A full
// disk"): nothing after step 2 happens until retryDiskFull writes it.
func (n *Node) handleReady(rl *readLoop) error {
	rd := n.rn.Ready()

	if rd.SoftState != nil {
		n.lead.Store(rd.SoftState.Lead)
		n.state.Store(uint32(rd.SoftState.RaftState))
	}
	isLeader := raft.StateType(n.state.Load()) == raft.StateLeader
	// 1. A leader's messages may leave before its own append.
	if isLeader {
		n.cfg.Transport.Send(rd.Messages)
	}
	// 2. Persist.
	if err := n.saveReady(rd); err != nil {
		return err
	}
	if err := n.writeReady(rd, isLeader); err != nil {
		if !IsNoSpace(err) {
			return err
		}
		if !n.enterDiskFull(err) {
			n.stalled = &stalledReady{rd: rd, isLeader: isLeader}
			return nil
		}
		// The reserve is free now: the same write again.
		if err := n.writeReady(rd, isLeader); err != nil {
			if !IsNoSpace(err) {
				return err
			}
			n.stalled = &stalledReady{rd: rd, isLeader: isLeader}
			return nil
		}
	}
	return n.finishReady(rd, isLeader, rl)
}

// saveReady hands the Ready's snapshot marker, entries and HardState to the
// WAL's buffer. It does not fail for lack of space (the WAL buffers).
func (n *Node) saveReady(rd raft.Ready) error {
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := n.wal.SaveSnapshot(rd.Snapshot.GetMetadata()); err != nil {
			return fmt.Errorf("raftnode: save snapshot marker: %w", err)
		}
	}
	if err := n.wal.Save(rd.HardState, rd.Entries); err != nil {
		return fmt.Errorf("raftnode: WAL append: %w", err)
	}
	return nil
}

// writeReady makes what saveReady buffered as durable as the Ready needs.
// On a full disk it fails with the WAL's *NoSpaceError and may be called
// again for the same Ready: the WAL keeps the records buffered.
func (n *Node) writeReady(rd raft.Ready, isLeader bool) error {
	// A snapshot is always synced: its file is only installed once the log
	// on disk records it (snap.SaveReceived).
	if n.cfg.SyncWrites && rd.MustSync || !raft.IsEmptySnap(rd.Snapshot) {
		if err := n.wal.Sync(); err != nil {
			return fmt.Errorf("raftnode: WAL fsync: %w", err)
		}
	} else if !isLeader && len(rd.Messages) > 0 || len(rd.CommittedEntries) > 0 {
		// Without -sync-writes the WAL still reaches the operating system
		// before anything it holds is acknowledged (a follower's messages,
		// an applied write), so a killed process loses nothing. Writes that
		// acknowledge nothing yet wait in the buffer for the next flush.
		if err := n.wal.Flush(); err != nil {
			return fmt.Errorf("raftnode: WAL write: %w", err)
		}
	}
	return nil
}

// finishReady runs steps 3 to 5 of a persisted Ready.
func (n *Node) finishReady(rd raft.Ready, isLeader bool, rl *readLoop) error {
	hs := rd.HardState
	// 3. In-memory log, then the followers' acknowledgements.
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := n.snaps.Install(rd.Snapshot.GetMetadata().GetIndex()); err != nil {
			return fmt.Errorf("raftnode: %w", err)
		}
		if err := n.store.ApplySnapshot(rd.Snapshot); err != nil {
			return fmt.Errorf("raftnode: apply snapshot to raft log: %w", err)
		}
		n.sendApply(applyBatch{snapshot: rd.Snapshot})
	}
	if hs != nil {
		if err := n.store.SetHardState(hs); err != nil {
			return fmt.Errorf("raftnode: %w", err)
		}
		// Published before the entries it commits are applied, so no one
		// sees applied > commit.
		n.term.Store(hs.GetTerm())
		n.commit.Store(hs.GetCommit())
	}
	if len(rd.Entries) > 0 {
		if err := n.store.Append(rd.Entries); err != nil {
			return fmt.Errorf("raftnode: append to raft log: %w", err)
		}
	}
	if !isLeader {
		n.cfg.Transport.Send(rd.Messages)
	}
	// 4. Committed entries to the apply loop; membership changes take effect
	// in raft here, in the goroutine that owns it.
	if len(rd.CommittedEntries) > 0 {
		b := applyBatch{entries: rd.CommittedEntries}
		for _, e := range rd.CommittedEntries {
			if cs := n.applyConfChange(e); cs != nil {
				if b.confStates == nil {
					b.confStates = make(map[uint64]*raftpb.ConfState)
				}
				b.confStates[e.GetIndex()] = cs
			}
		}
		n.sendApply(b)
	}
	for _, rs := range rd.ReadStates {
		rl.resolve(rs)
	}
	if last, err := n.store.LastIndex(); err == nil {
		n.lastIndex.Store(last)
	}
	// 5.
	n.rn.Advance(rd)
	return nil
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
	// The one log line per membership change, on every member.
	var changes []string
	for _, c := range cc.AsV2().GetChanges() {
		changes = append(changes, fmt.Sprintf("%s %x", c.GetType(), c.GetNodeId()))
	}
	n.log.Info("membership changed", "index", e.GetIndex(), "changes", changes,
		"voters", cs.GetVoters(), "learners", cs.GetLearners())
	return cs
}

// sendApply queues a batch for the apply loop. The queue is bounded; when
// the apply loop falls behind the raft loop waits here, which is the
// backpressure that keeps committed-but-unapplied entries bounded.
func (n *Node) sendApply(b applyBatch) {
	n.applyC <- b
}

// shutdownRaft ends the raft side: the apply loop finishes what it was
// handed, the WAL is synced and closed.
func (n *Node) shutdownRaft() {
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

func (rl *readLoop) resolve(rs raft.ReadState) {
	if len(rs.RequestCtx) != 8 || binary.BigEndian.Uint64(rs.RequestCtx) != rl.seq {
		return
	}
	for _, r := range rl.inflight {
		r.ch <- readResult{index: rs.Index}
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
