package raftnode

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvdb/kvdb/internal/raftnode/snap"
	"github.com/kvdb/kvdb/internal/raftnode/wal"
)

// dirLock holds an exclusive flock on the data directory so two processes
// never write one WAL.
type dirLock struct{ f *os.File }

func lockDir(dir string) (*dirLock, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("raftnode: lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("raftnode: data dir %s is in use by another process: %w", dir, err)
	}
	return &dirLock{f: f}, nil
}

func (l *dirLock) release() {
	if l != nil {
		l.f.Close()
	}
}

// open recovers the node's state from the data directory: the newest
// snapshot named by the WAL is restored into the state machine, the WAL's
// HardState and entries after it go into raft's MemoryStorage, and the raft
// node is created on top. A fresh directory bootstraps the initial members.
func (n *Node) open() (err error) {
	if err := os.MkdirAll(n.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("raftnode: create data dir: %w", err)
	}
	if n.lock, err = lockDir(n.cfg.DataDir); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			if n.wal != nil {
				n.wal.Close()
			}
			n.lock.release()
		}
	}()
	if n.snaps, err = snap.New(filepath.Join(n.cfg.DataDir, "snap")); err != nil {
		return fmt.Errorf("raftnode: %w", err)
	}
	w, contents, err := wal.Open(filepath.Join(n.cfg.DataDir, "wal"), wal.Options{
		SegmentSize: n.cfg.WALSegmentSize,
		Logger:      n.cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("raftnode: open WAL: %w", err)
	}
	n.wal = w
	n.store = raft.NewMemoryStorage()

	var applied uint64
	if snapIndex := contents.Snapshot.GetIndex(); snapIndex > 0 {
		rc, meta, err := n.snaps.Open(snapIndex)
		if err != nil {
			return fmt.Errorf("raftnode: WAL names snapshot at index %d but it cannot be read: %w", snapIndex, err)
		}
		err = n.sm.Restore(rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("raftnode: restore snapshot at index %d: %w", snapIndex, err)
		}
		if err := n.store.ApplySnapshot(&raftpb.Snapshot{Metadata: meta}); err != nil {
			return fmt.Errorf("raftnode: load snapshot into raft log: %w", err)
		}
		applied = snapIndex
		n.snapIndex.Store(snapIndex)
	}
	fresh := applied == 0 && raft.IsEmptyHardState(contents.HardState) && len(contents.Entries) == 0
	if !raft.IsEmptyHardState(contents.HardState) {
		if err := n.store.SetHardState(proto.Clone(contents.HardState).(*raftpb.HardState)); err != nil {
			return fmt.Errorf("raftnode: %w", err)
		}
	}
	if len(contents.Entries) > 0 {
		if err := n.store.Append(contents.Entries); err != nil {
			return fmt.Errorf("raftnode: load WAL entries into raft log: %w", err)
		}
	}
	n.reads.applied.Store(applied)

	rc := &raft.Config{
		ID:                        n.cfg.ID,
		ElectionTick:              n.cfg.ElectionTicks,
		HeartbeatTick:             n.cfg.HeartbeatTicks,
		Storage:                   n.store,
		Applied:                   applied,
		MaxSizePerMsg:             DefaultMaxSizePerMsg,
		MaxInflightMsgs:           DefaultMaxInflightMsgs,
		MaxUncommittedEntriesSize: n.cfg.MaxUncommittedSize,
		CheckQuorum:               true,
		PreVote:                   true,
		Logger:                    newRaftLogger(n.log),
	}
	if n.rn, err = raft.NewRawNode(rc); err != nil {
		return fmt.Errorf("raftnode: %w", err)
	}
	if fresh {
		peers := make([]raft.Peer, len(n.cfg.Peers))
		for i, p := range n.cfg.Peers {
			peers[i] = raft.Peer{ID: p.ID, Context: p.Context}
		}
		if err := n.rn.Bootstrap(peers); err != nil {
			return fmt.Errorf("raftnode: bootstrap: %w", err)
		}
	}
	last, _ := n.store.LastIndex()
	n.log.Info("raft storage opened", "data_dir", n.cfg.DataDir, "fresh", fresh,
		"snapshot_index", applied, "last_index", last, "wal_entries", len(contents.Entries),
		"wal_repaired_bytes", contents.RepairedBytes)
	return nil
}
