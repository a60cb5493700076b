package raftnode

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

var (
	// ErrNotLeader is returned by operations only the leader may start.
	ErrNotLeader = errors.New("raftnode: not the leader")
	// ErrConfChangeInProgress is returned while an earlier membership change
	// has not been applied yet.
	ErrConfChangeInProgress = errors.New("raftnode: another membership change is in progress")
	// ErrWouldLoseQuorum wraps a refused membership change.
	ErrWouldLoseQuorum = errors.New("raftnode: the change would leave the cluster without a quorum")
	// ErrUnknownMember is returned for a member id that is not in the cluster.
	ErrUnknownMember = errors.New("raftnode: unknown member")
	// ErrMemberExists is returned when adding a member already in the
	// cluster (member ids derive from names, so a name in use).
	ErrMemberExists = errors.New("raftnode: the member is already in the cluster")
	// ErrRemoved is returned by a node that was removed from the cluster.
	ErrRemoved = errors.New("raftnode: this member was removed from the cluster")
	// ErrUnreachable is returned for a leader transfer to a voter the
	// leader has not heard from within the election timeout.
	ErrUnreachable = errors.New("raftnode: the member is not reachable")
)

type confRequest struct {
	cc   *raftpb.ConfChange
	errC chan error
}

type transferRequest struct {
	target uint64 // 0: the most up-to-date follower
	errC   chan error
	chosen chan uint64
}

// AddMember proposes adding m as a voter and waits until the change is
// applied locally. It must be called on the leader.
func (n *Node) AddMember(ctx context.Context, m Member) error {
	if m.ID == 0 || m.PeerAddr() == "" {
		return fmt.Errorf("%w: a new member needs an id and an address", ErrUnknownMember)
	}
	cc := &raftpb.ConfChange{
		Type:    raftpb.ConfChangeType_ConfChangeAddNode.Enum(),
		NodeId:  proto.Uint64(m.ID),
		Context: encodeMemberContext(m),
	}
	return n.changeMembership(ctx, cc)
}

// RemoveMember proposes removing member id and waits until the change is
// applied locally. It must be called on the leader. Removing the leader
// itself ends its term as the change applies, and the wait for it then
// ends with ErrLeaderChanged: the member leaving the membership within two
// election timeouts makes that a success.
func (n *Node) RemoveMember(ctx context.Context, id uint64) error {
	cc := &raftpb.ConfChange{
		Type:   raftpb.ConfChangeType_ConfChangeRemoveNode.Enum(),
		NodeId: proto.Uint64(id),
	}
	err := n.changeMembership(ctx, cc)
	if errors.Is(err, ErrLeaderChanged) || errors.Is(err, ErrRemoved) || errors.Is(err, ErrStopped) {
		if n.memberGone(ctx, id) {
			return nil
		}
	}
	return err
}

// memberGone waits, at most two election timeouts, for member id to leave
// this node's membership: true when it did (the removal was applied).
func (n *Node) memberGone(ctx context.Context, id uint64) bool {
	deadline := time.Now().Add(2 * n.ElectionTimeout())
	for {
		present := false
		for _, m := range n.Members() {
			present = present || m.ID == id
		}
		if !present {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (n *Node) changeMembership(ctx context.Context, cc *raftpb.ConfChange) error {
	id := n.idBase + n.idSeq.Add(1)
	cc.Id = proto.Uint64(id)
	ch := n.waits.register(id)
	req := confRequest{cc: cc, errC: make(chan error, 1)}
	select {
	case n.confC <- req:
	case <-ctx.Done():
		n.waits.cancel(id)
		return ctx.Err()
	case <-n.stopC:
		n.waits.cancel(id)
		return ErrStopped
	}
	if err := <-req.errC; err != nil {
		n.waits.cancel(id)
		return err
	}
	select {
	case r := <-ch:
		return r.err
	case <-ctx.Done():
		n.waits.cancel(id)
		return ctx.Err()
	case <-n.done:
		return ErrStopped
	}
}

// proposeConfChange runs on the raft loop: it refuses changes that would
// leave the cluster unable to reach a quorum with the members that are
// active now, then proposes.
func (n *Node) proposeConfChange(req confRequest) {
	req.errC <- n.checkAndProposeConfChange(req.cc)
}

func (n *Node) checkAndProposeConfChange(cc *raftpb.ConfChange) error {
	if e := n.diskFullErr.Load(); e != nil {
		return e
	}
	if raft.StateType(n.state.Load()) != raft.StateLeader {
		return n.notLeaderError()
	}
	if n.confPending.Load() != 0 {
		return ErrConfChangeInProgress
	}
	st := n.rn.Status()
	voters := st.Config.Voters.IDs()
	target := cc.GetNodeId()
	switch cc.GetType() {
	case raftpb.ConfChangeType_ConfChangeAddNode:
		if _, ok := voters[target]; ok {
			return fmt.Errorf("%w: member %x is already a voter (member names are unique)", ErrMemberExists, target)
		}
		if n.members.isRemoved(target) {
			return fmt.Errorf("%w: member id %x was removed and cannot rejoin; use another name", ErrUnknownMember, target)
		}
		voters[target] = struct{}{}
	case raftpb.ConfChangeType_ConfChangeRemoveNode:
		if _, ok := voters[target]; !ok {
			return fmt.Errorf("%w: %x is not a voter", ErrUnknownMember, target)
		}
		delete(voters, target)
		if len(voters) == 0 {
			return fmt.Errorf("%w: cannot remove the last member", ErrWouldLoseQuorum)
		}
	default:
		return fmt.Errorf("raftnode: unsupported membership change %v", cc.GetType())
	}
	active := 0
	now := time.Now()
	for id := range voters {
		if pr, ok := st.Progress[id]; id == n.cfg.ID || ok && pr.RecentActive && n.heardRecently(id, now) {
			active++
		}
	}
	if need := len(voters)/2 + 1; active < need {
		return fmt.Errorf("%w: after the change %d of %d voters would be reachable, a quorum needs %d",
			ErrWouldLoseQuorum, active, len(voters), need)
	}
	if err := n.rn.ProposeConfChange(cc); err != nil {
		return ErrProposalDropped
	}
	n.confPending.Store(cc.GetId())
	n.confPendingTicks = 0
	return nil
}

func (n *Node) notLeaderError() error {
	lead := n.lead.Load()
	if lead == raft.None {
		return fmt.Errorf("%w (no leader is known)", ErrNotLeader)
	}
	m, _ := n.members.get(lead)
	if c := n.ClientAddressOf(lead); c != "" && c != m.Address {
		return fmt.Errorf("%w: the leader is %s at %s (advertised address %s)", ErrNotLeader, m.Name, c, m.Address)
	}
	return fmt.Errorf("%w: the leader is %s at %s", ErrNotLeader, m.Name, m.Address)
}

// TransferLeadership hands leadership to target (0: the most up-to-date
// follower) and waits until this node sees the new leader.
func (n *Node) TransferLeadership(ctx context.Context, target uint64) (uint64, error) {
	req := transferRequest{target: target, errC: make(chan error, 1), chosen: make(chan uint64, 1)}
	select {
	case n.transferC <- req:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-n.stopC:
		return 0, ErrStopped
	}
	if err := <-req.errC; err != nil {
		return 0, err
	}
	target = <-req.chosen
	t := time.NewTicker(n.cfg.TickInterval / 2)
	defer t.Stop()
	for n.lead.Load() != target {
		select {
		case <-t.C:
		case <-ctx.Done():
			return 0, fmt.Errorf("raftnode: leadership did not move to %x: %w", target, ctx.Err())
		case <-n.stopC:
			return 0, ErrStopped
		}
	}
	return target, nil
}

// transferLeadership runs on the raft loop.
func (n *Node) transferLeadership(req transferRequest) {
	if raft.StateType(n.state.Load()) != raft.StateLeader {
		req.errC <- n.notLeaderError()
		return
	}
	st := n.rn.Status()
	target := req.target
	if target == 0 {
		var best uint64
		for id, pr := range st.Progress {
			if _, voter := st.Config.Voters.IDs()[id]; id == n.cfg.ID || !voter || !pr.RecentActive || !n.heardRecently(id, time.Now()) {
				continue
			}
			if target == 0 || pr.Match > best {
				target, best = id, pr.Match
			}
		}
		if target == 0 {
			req.errC <- fmt.Errorf("%w: no other active voter to hand leadership to", ErrUnknownMember)
			return
		}
	}
	if target == n.cfg.ID {
		req.errC <- nil
		req.chosen <- target
		return
	}
	if _, ok := st.Config.Voters.IDs()[target]; !ok {
		req.errC <- fmt.Errorf("%w: %x is not a voter", ErrUnknownMember, target)
		return
	}
	if !n.heardRecently(target, time.Now()) {
		req.errC <- fmt.Errorf("%w: nothing heard from %x within the election timeout (%s): it is down or cut off, and leadership stays here", ErrUnreachable, target, n.ElectionTimeout())
		return
	}
	n.rn.TransferLeader(target)
	req.errC <- nil
	req.chosen <- target
}

// ReceiveSnapshot stores a snapshot streamed from the leader, then hands
// its MsgSnap to raft, which installs it through the Ready loop.
func (n *Node) ReceiveSnapshot(ctx context.Context, m *raftpb.Message, body io.Reader) error {
	meta := m.GetSnapshot().GetMetadata()
	if meta.GetIndex() == 0 {
		return errors.New("raftnode: snapshot message without metadata")
	}
	start := time.Now()
	var size int64
	if err := n.snaps.SaveReceived(meta, func(w io.Writer) error {
		v, ok := n.sm.(SnapshotVerifier)
		if !ok {
			var err error
			size, err = io.Copy(w, body)
			return err
		}
		// The body is checked as it is written: the verifier reads a
		// copy of it through a pipe.
		pr, pw := io.Pipe()
		verified := make(chan error, 1)
		go func() {
			// The body is the file's: the membership section, then the
			// state machine's stream.
			_, rest, err := readMembersSection(pr)
			if err == nil {
				err = v.VerifySnapshot(rest)
			}
			if err == nil {
				_, _ = io.Copy(io.Discard, pr) // what the verifier left unread
			}
			pr.CloseWithError(cmp.Or(err, io.ErrClosedPipe))
			verified <- err
		}()
		var err error
		size, err = io.Copy(w, io.TeeReader(body, pw))
		pw.CloseWithError(err)
		if verr := <-verified; verr != nil {
			return fmt.Errorf("the snapshot cannot be restored: %w", verr)
		}
		return err
	}); err != nil {
		return fmt.Errorf("raftnode: receive snapshot %d: %w", meta.GetIndex(), err)
	}
	n.log.Info("snapshot received", "index", meta.GetIndex(), "term", meta.GetTerm(), "from", fmt.Sprintf("%x", m.GetFrom()),
		"bytes", size, "duration", time.Since(start).Round(time.Millisecond))
	return n.Step(ctx, m)
}

// OpenSnapshot opens the body of the local snapshot at index for sending.
func (n *Node) OpenSnapshot(index uint64) (io.ReadCloser, error) {
	rc, _, err := n.snaps.Open(index)
	return rc, err
}

// NotLeaderError is what a leader-only operation answers on a follower:
// ErrNotLeader naming the leader and where clients reach it.
func (n *Node) NotLeaderError() error { return n.notLeaderError() }

// heardRecently reports whether a message from peer id arrived within the
// last election timeout. raft marks a member it has just added as recently
// active before it ever answers, so a member added and never started would
// count as reachable by RecentActive alone; raft loop only.
func (n *Node) heardRecently(id uint64, now time.Time) bool {
	t, ok := n.lastContact[id]
	return ok && now.Sub(t) <= n.ElectionTimeout()
}

// ElectionTimeout is the election timeout: ElectionTicks tick intervals.
func (n *Node) ElectionTimeout() time.Duration {
	return time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
}
