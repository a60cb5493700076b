package raftnode

import (
	"fmt"
	"math"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// walItem is one piece of work for the WAL goroutine, in the order it was
// queued: exactly one field is set.
type walItem struct {
	// app is a MsgStorageAppend from a Ready: entries, HardState and maybe
	// a snapshot to persist, and the Responses to deliver once they are.
	app *raftpb.Message
	// sync asks for an fsync of everything queued before it.
	sync chan error
	// snap says a local snapshot file is durable: record and compact.
	snap *raftpb.SnapshotMetadata
}

// walQueue hands work from the raft loop (and the snapshot writer) to the
// WAL goroutine. push never blocks: the raft loop must not wait for the
// disk. It is bounded by raft itself: a Ready only carries entries raft has
// not handed out before, and the leader's uncommitted entries are capped
// (Config.MaxUncommittedSize).
type walQueue struct {
	mu    sync.Mutex
	items []walItem
	wake  chan struct{}
}

func newWALQueue() *walQueue { return &walQueue{wake: make(chan struct{}, 1)} }

func (q *walQueue) push(it walItem) {
	q.mu.Lock()
	q.items = append(q.items, it)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take returns everything queued, reusing spare as the next queue.
func (q *walQueue) take(spare []walItem) []walItem {
	q.mu.Lock()
	items := q.items
	q.items = spare[:0]
	q.mu.Unlock()
	return items
}

// walGroup is a run of consecutive appends written with one write (and at
// most one fsync): group commit. Everything queued while the previous
// group was being written goes into the next one, so groups grow with load.
type walGroup struct {
	apps      []*raftpb.Message
	needSync  bool
	needWrite bool // something whose Responses claim it is on disk
}

// walLoop is the WAL goroutine: the only user of n.wal after start-up, and
// the owner of the disk-full state (reserve, stalled group). See doc.go,
// "The raft loop never waits for the disk".
func (n *Node) walLoop() {
	defer close(n.walDone)
	var syncTick <-chan time.Time
	if !n.cfg.SyncWrites {
		t := time.NewTicker(n.cfg.SyncInterval)
		defer t.Stop()
		syncTick = t.C
	}
	retry := time.NewTicker(diskFullRetry)
	defer retry.Stop()
	var items []walItem
	for {
		select {
		case <-n.walq.wake:
		case <-syncTick:
			if n.stalled != nil {
				continue
			}
			if err := n.wal.Sync(); err != nil {
				if IsNoSpace(err) {
					n.enterDiskFull(err)
					continue
				}
				n.fail(fmt.Errorf("raftnode: background WAL sync: %w", err))
				return
			}
			continue
		case <-retry.C:
			if n.diskFullErr.Load() == nil && n.stalled == nil {
				continue
			}
			if err := n.retryDiskFull(); err != nil {
				n.fail(err)
				return
			}
		case <-n.walStop:
			return
		}
		if n.stalled != nil {
			continue // the queue waits until the stalled group is written
		}
		items = n.walq.take(items)
		if err := n.processWAL(items); err != nil {
			n.fail(err)
			return
		}
		clear(items)
	}
}

// processWAL handles items in queue order. Consecutive appends form one
// group; a sync request or snapshot record first finishes the group before
// it. When a group stalls on a full disk, the items after it go back to the
// front of the queue.
func (n *Node) processWAL(items []walItem) error {
	var g walGroup
	for i := 0; i < len(items); i++ {
		it := items[i]
		if it.app != nil {
			if err := n.saveAppend(&g, it.app); err != nil {
				return err
			}
			continue
		}
		if err := n.writeGroup(&g); err != nil {
			return err
		}
		if n.stalled != nil {
			n.requeue(items[i:])
			return nil
		}
		switch {
		case it.sync != nil:
			err := n.wal.Sync()
			if IsNoSpace(err) {
				n.enterDiskFull(err)
			}
			it.sync <- err
		case it.snap != nil:
			if err := n.snapshotSaved(it.snap); err != nil {
				return err
			}
		}
	}
	return n.writeGroup(&g)
}

// requeue puts items back at the front of the queue.
func (n *Node) requeue(items []walItem) {
	q := n.walq
	q.mu.Lock()
	q.items = append(append([]walItem(nil), items...), q.items...)
	q.mu.Unlock()
}

// saveAppend hands one MsgStorageAppend's records to the WAL's buffer (it
// does not fail for lack of space: the WAL buffers).
func (n *Node) saveAppend(g *walGroup, m *raftpb.Message) error {
	if s := m.GetSnapshot(); s != nil && !raft.IsEmptySnap(s) {
		if err := n.wal.SaveSnapshot(s.GetMetadata()); err != nil {
			return fmt.Errorf("raftnode: save snapshot marker: %w", err)
		}
		// A snapshot is always synced: its file is only installed once the
		// log on disk records it (snap.SaveReceived).
		g.needSync, g.needWrite = true, true
	}
	hs := hardStateOf(m)
	if err := n.wal.Save(hs, m.GetEntries()); err != nil {
		return fmt.Errorf("raftnode: WAL append: %w", err)
	}
	if len(m.GetEntries()) > 0 ||
		hs != nil && (hs.GetTerm() != n.walHS.GetTerm() || hs.GetVote() != n.walHS.GetVote()) {
		// raft.MustSync: a new entry, term or vote must be on disk before
		// anyone hears of it. A HardState that only moves the commit index
		// need not be (raft recovers the commit index), so it waits in the
		// WAL's buffer for the next write.
		g.needWrite = true
		g.needSync = g.needSync || n.cfg.SyncWrites
	}
	if hs != nil {
		n.walHS = hs
	}
	g.apps = append(g.apps, m)
	return nil
}

// hardStateOf rebuilds the HardState a MsgStorageAppend carries in its
// Term, Vote and Commit fields, or nil when it carries none.
func hardStateOf(m *raftpb.Message) *raftpb.HardState {
	if m.Term == nil && m.Vote == nil && m.Commit == nil {
		return nil
	}
	return &raftpb.HardState{Term: m.Term, Vote: m.Vote, Commit: m.Commit}
}

// writeGroup makes the group's records as durable as they need to be and
// then finishes the group. On a full disk it frees the reserve and tries
// once more; if that fails too the group stalls (n.stalled).
func (n *Node) writeGroup(g *walGroup) error {
	if len(g.apps) == 0 {
		return nil
	}
	if !g.needWrite {
		// Nothing in the group claims durability: every earlier group was
		// written (and fsynced when it had to be) before this one.
		err := n.finishGroup(g)
		g.apps = g.apps[:0]
		return err
	}
	if h := n.cfg.beforeWALWrite; h != nil {
		h(g.apps)
	}
	err := n.writeWAL(g.needSync)
	if IsNoSpace(err) && n.enterDiskFull(err) {
		err = n.writeWAL(g.needSync) // the reserve is free now: the same write again
	}
	if IsNoSpace(err) {
		n.stalled = &walGroup{apps: g.apps, needSync: g.needSync, needWrite: true}
		n.walStalled.Store(true)
		g.apps, g.needSync, g.needWrite = nil, false, false
		return nil
	}
	if err != nil {
		return err
	}
	err = n.finishGroup(g)
	g.apps, g.needSync, g.needWrite = g.apps[:0], false, false
	return err
}

// writeWAL writes what the WAL buffers and fsyncs it when sync is set.
// Without -sync-writes the records still reach the operating system before
// anything they hold is acknowledged (a response leaves, an entry is
// applied), so a killed process loses nothing.
func (n *Node) writeWAL(sync bool) error {
	if sync {
		if err := n.wal.Sync(); err != nil {
			return fmt.Errorf("raftnode: WAL fsync: %w", err)
		}
		return nil
	}
	if err := n.wal.Flush(); err != nil {
		return fmt.Errorf("raftnode: WAL write: %w", err)
	}
	return nil
}

// finishGroup acts on a written group, in order: a received snapshot is
// installed and handed to the apply loop, entries join the in-memory log
// raft reads from, and only then are the responses delivered: to this
// node's raft (its own append acknowledgement, MsgStorageAppendResp) and
// to peers (a follower's MsgAppResp, votes).
func (n *Node) finishGroup(g *walGroup) error {
	var self, peers []*raftpb.Message
	for _, m := range g.apps {
		if s := m.GetSnapshot(); s != nil && !raft.IsEmptySnap(s) {
			if err := n.snaps.Install(s.GetMetadata().GetIndex()); err != nil {
				return fmt.Errorf("raftnode: %w", err)
			}
			if err := n.store.ApplySnapshot(s); err != nil {
				return fmt.Errorf("raftnode: apply snapshot to raft log: %w", err)
			}
			// Queued before raft hears the snapshot is stable, so before any
			// entry after it can be handed to the apply loop.
			n.sendApply(applyBatch{snapshot: s})
		}
		if hs := hardStateOf(m); hs != nil {
			if err := n.store.SetHardState(hs); err != nil {
				return fmt.Errorf("raftnode: %w", err)
			}
		}
		if ents := m.GetEntries(); len(ents) > 0 {
			if err := n.store.Append(ents); err != nil {
				return fmt.Errorf("raftnode: append to raft log: %w", err)
			}
		}
		for _, r := range m.GetResponses() {
			if r.GetTo() == n.cfg.ID {
				self = append(self, r)
			} else {
				peers = append(peers, r)
			}
		}
	}
	if last, err := n.store.LastIndex(); err == nil {
		n.lastIndex.Store(last)
	}
	n.cfg.Transport.Send(peers)
	if len(self) > 0 {
		select {
		case n.respC <- self:
		case <-n.walStop:
		}
	}
	return nil
}

// snapshotSaved runs on the WAL goroutine once a snapshot file is durable:
// the WAL records it, the in-memory log is compacted keeping some entries
// for slow followers, and WAL segments and snapshot files it made obsolete
// go.
func (n *Node) snapshotSaved(meta *raftpb.SnapshotMetadata) error {
	index := meta.GetIndex()
	if err := n.wal.SaveSnapshot(meta); err != nil {
		return fmt.Errorf("raftnode: record snapshot in WAL: %w", err)
	}
	if err := n.wal.Sync(); err != nil {
		if IsNoSpace(err) {
			// The marker stays buffered and is written with the next
			// write that succeeds; compaction waits for the next snapshot.
			n.enterDiskFull(err)
			return nil
		}
		return fmt.Errorf("raftnode: WAL fsync: %w", err)
	}
	if _, err := n.store.CreateSnapshot(index, meta.GetConfState(), nil); err != nil {
		n.log.Warn("raft log snapshot", "index", index, "err", err)
	}
	if compact := n.compactTo(index); compact > 0 {
		if first, _ := n.store.FirstIndex(); compact > first {
			if err := n.store.Compact(compact); err != nil {
				n.log.Warn("raft log compaction", "index", compact, "err", err)
			}
		}
	}
	if err := n.wal.ReleaseTo(index); err != nil {
		n.log.Warn("releasing WAL segments", "index", index, "err", err)
	}
	if err := n.snaps.Purge(2); err != nil {
		n.log.Warn("purging old snapshots", "err", err)
	}
	n.snapIndex.Store(index)
	return nil
}

// entryOverhead is an estimate, not a measurement, of what an entry costs
// in memory besides its data (the raftpb.Entry and its fields).
const entryOverhead = 64

// compactTo is the index up to which the in-memory log may be compacted
// after a snapshot at index: it keeps the SnapshotCatchUpEntries entries
// before index, and of those no more than SnapshotCatchUpBytes. 0: none.
func (n *Node) compactTo(index uint64) uint64 {
	var compact uint64
	if index > n.cfg.SnapshotCatchUpEntries {
		compact = index - n.cfg.SnapshotCatchUpEntries
	}
	first, err := n.store.FirstIndex()
	if err != nil || first > index {
		return compact
	}
	lo := max(first, compact+1)
	ents, err := n.store.Entries(lo, index+1, math.MaxUint64)
	if err != nil {
		return compact
	}
	var kept uint64
	for i := len(ents) - 1; i >= 0; i-- {
		kept += uint64(len(ents[i].GetData())) + entryOverhead
		if kept > n.cfg.SnapshotCatchUpBytes {
			return max(compact, ents[i].GetIndex())
		}
	}
	return compact
}

// syncWAL asks the WAL goroutine to fsync everything queued so far and
// waits for the result.
func (n *Node) syncWAL() error {
	ch := make(chan error, 1)
	n.walq.push(walItem{sync: ch})
	select {
	case err := <-ch:
		return err
	case <-n.walDone:
		return ErrStopped
	}
}
