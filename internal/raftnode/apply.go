package raftnode

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
)

// applyLoop applies committed entries in order. It is the only goroutine
// that calls the state machine after start-up.
// confState is the membership as of the last applied entry; it starts as
// the one recovered from disk.
func (n *Node) applyLoop(confState *raftpb.ConfState) {
	defer func() {
		// The raft loop has closed the WAL (it closed applyC first).
		<-n.raftDone
		n.lock.release()
		close(n.done)
	}()
	var (
		lastTerm     uint64
		snapshotting = make(chan struct{}, 1)
		lastSnap     = n.snapIndex.Load()
		// sinceSnap: bytes of the entries applied since lastSnap.
		sinceSnap uint64
		// confChanged: a membership change was applied since lastSnap.
		// The snapshot raft sends to a member that needs one is the last
		// one taken, with the membership of its time: a member added
		// after it is not in it, and raft on that member refuses it
		// ("not in the ConfState"), so the member would stay empty until
		// the next snapshot came due. One is taken at once instead.
		confChanged bool
	)
	for b := range n.applyC {
		if b.snapshot != nil {
			if err := n.restoreSnapshot(b.snapshot); err != nil {
				n.fail(err)
				continue
			}
			confState = proto.Clone(b.snapshot.GetMetadata().GetConfState()).(*raftpb.ConfState)
			lastSnap = b.snapshot.GetMetadata().GetIndex()
			sinceSnap = 0
			n.reads.advance(lastSnap)
			continue
		}
		for _, e := range b.entries {
			index := e.GetIndex()
			if index <= n.reads.applied.Load() {
				continue
			}
			lastTerm = e.GetTerm()
			if cs, ok := b.confStates[index]; ok {
				confState = cs
				n.applyMembership(e, cs)
				confChanged = true
			}
			data := e.GetData()
			sinceSnap += uint64(len(data))
			if e.GetType() != raftpb.EntryNormal || len(data) < idHeaderLen {
				n.sm.Apply(index, nil)
				continue
			}
			id := binary.BigEndian.Uint64(data)
			start := time.Now()
			val := n.sm.Apply(index, data[idHeaderLen:])
			n.cfg.Metrics.EntryApplied(time.Since(start))
			n.waits.trigger(id, result{val: val})
		}
		if len(b.entries) == 0 {
			continue
		}
		applied := b.entries[len(b.entries)-1].GetIndex()
		if applied > n.reads.applied.Load() {
			n.reads.advance(applied)
		}
		if applied-lastSnap >= n.cfg.SnapshotCount || sinceSnap >= n.snapshotBytesDue() || confChanged {
			select {
			case snapshotting <- struct{}{}:
				lastSnap, sinceSnap, confChanged = applied, 0, false
				meta := &raftpb.SnapshotMetadata{
					ConfState: proto.Clone(confState).(*raftpb.ConfState),
					Index:     proto.Uint64(applied),
					Term:      proto.Uint64(lastTerm),
				}
				sn := n.sm.Snapshot()
				members := n.members.encode()
				go func() {
					defer func() { <-snapshotting }()
					n.saveSnapshot(meta, sn, members)
				}()
			default:
				// The previous snapshot is still being written.
			}
		}
	}
	// Wait for a snapshot being written, then fail whoever still waits.
	snapshotting <- struct{}{}
	n.waits.failAll(ErrStopped)
}

// snapshotBytesDue is how many bytes of applied entries call for the next
// snapshot: Config.SnapshotBytes, or the last snapshot's size when that is
// larger, so that writing snapshots costs at most as much as the writes.
func (n *Node) snapshotBytesDue() uint64 {
	return max(n.cfg.SnapshotBytes, n.lastSnapSize.Load())
}

// saveSnapshot streams sn to a snapshot file, off the apply loop, and then
// hands the metadata to the raft loop to record and compact.
func (n *Node) saveSnapshot(meta *raftpb.SnapshotMetadata, sn Snapshot, members *raftv1.MemberList) {
	start := time.Now()
	if sn.Index() != meta.GetIndex() {
		panic(fmt.Sprintf("raftnode: snapshot at %d taken for index %d", sn.Index(), meta.GetIndex()))
	}
	// A snapshot file must never claim an index the WAL on disk does not
	// reach (recovery refuses that as a lost log), and without -sync-writes
	// the applied entries may not be fsynced yet.
	if err := n.syncWAL(); err != nil {
		n.log.Warn("snapshot skipped: the WAL could not be synced", "index", meta.GetIndex(), "err", err)
		return
	}
	var size int64
	err := n.snaps.Save(meta, func(w io.Writer) error {
		if err := writeMembersSection(w, members); err != nil {
			return err
		}
		var err error
		size, err = sn.WriteTo(w)
		return err
	})
	if err != nil {
		n.log.Error("snapshot failed", "index", meta.GetIndex(), "err", err)
		return
	}
	took := time.Since(start)
	n.lastSnapSize.Store(uint64(size))
	n.cfg.Metrics.SnapshotSaved(took, size)
	n.log.Info("snapshot saved", "index", meta.GetIndex(), "term", meta.GetTerm(),
		"bytes", size, "duration", took.Round(time.Millisecond))
	n.walq.push(walItem{snap: meta})
}

// stopRemoved stops a node that has just applied its own removal: it can
// never take part in the cluster again. Stop and Done report ErrRemoved.
func (n *Node) stopRemoved(index uint64) {
	n.log.Warn("this member was removed from the cluster; shutting down", "index", index)
	n.errMu.Lock()
	if n.stopErr == nil {
		n.stopErr = ErrRemoved
	}
	n.errMu.Unlock()
	n.stopOnce.Do(func() { close(n.stopC) })
}

// IsRemoved reports whether member id was removed from the cluster.
func (n *Node) IsRemoved(id uint64) bool { return n.members.isRemoved(id) }

// RemovedByPeer is called by the transport when a peer refuses this node's
// messages because it knows this member was removed.
func (n *Node) RemovedByPeer(peer uint64) {
	if n.removed.Swap(true) {
		return
	}
	n.log.Warn("a peer reports this member was removed from the cluster", "peer", fmt.Sprintf("%x", peer))
	n.stopRemoved(0)
}

// restoreSnapshot replaces the state machine with a snapshot received from
// the leader (already saved to disk by the transport).
func (n *Node) restoreSnapshot(s *raftpb.Snapshot) error {
	index := s.GetMetadata().GetIndex()
	if _, err := n.restoreFromFile(index); err != nil {
		return fmt.Errorf("raftnode: restore received snapshot: %w", err)
	}
	if n.members.isRemoved(n.cfg.ID) {
		n.removed.Store(true)
		defer n.stopRemoved(index)
	}
	n.log.Info("restored snapshot from leader", "index", index, "term", s.GetMetadata().GetTerm())
	n.snapIndex.Store(index)
	return nil
}

// applyMembership records an applied membership change: names and
// addresses, the transport's address book, and whether this node is out.
func (n *Node) applyMembership(e *raftpb.Entry, cs *raftpb.ConfState) {
	var cc raftpb.ConfChange
	if e.GetType() != raftpb.EntryConfChange || proto.Unmarshal(e.GetData(), &cc) != nil {
		n.members.mu.Lock()
		n.members.setConfState(cs)
		n.members.mu.Unlock()
		return
	}
	n.members.apply(&cc, cs)
	id := cc.GetNodeId()
	switch cc.GetType() {
	case raftpb.ConfChangeType_ConfChangeRemoveNode:
		if id == n.cfg.ID {
			n.removed.Store(true)
			defer n.stopRemoved(e.GetIndex())
		} else {
			n.cfg.Transport.RemovePeer(id)
		}
	default:
		if m, ok := n.members.get(id); ok && id != n.cfg.ID {
			n.cfg.Transport.AddPeer(id, m.PeerAddr())
		}
	}
	if reqID := cc.GetId(); reqID != 0 {
		n.confPending.CompareAndSwap(reqID, 0)
		n.waits.trigger(reqID, result{})
	}
}
