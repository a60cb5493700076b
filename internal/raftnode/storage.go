package raftnode

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
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
		OnSync:      n.cfg.Metrics.WALSynced,
	})
	if err != nil {
		return fmt.Errorf("raftnode: open WAL: %w", err)
	}
	n.wal = w
	n.store = raft.NewMemoryStorage()
	if err := n.loadClusterID(); err != nil {
		return err
	}

	var applied uint64
	if snapIndex := contents.Snapshot.GetIndex(); snapIndex > 0 {
		meta, err := n.restoreFromFile(snapIndex)
		if err != nil {
			return fmt.Errorf("raftnode: WAL names snapshot at index %d but it cannot be restored: %w", snapIndex, err)
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
		StepDownOnRemoval:         true,
		Logger:                    newRaftLogger(n.log),
	}
	if n.rn, err = raft.NewRawNode(rc); err != nil {
		return fmt.Errorf("raftnode: %w", err)
	}
	if fresh && !n.cfg.Join {
		peers := make([]raft.Peer, len(n.cfg.Peers))
		for i, p := range n.cfg.Peers {
			peers[i] = raft.Peer{ID: p.ID, Context: encodeMemberContext(p)}
		}
		// Every member bootstraps the same entries, so order them the same.
		sort.Slice(peers, func(i, j int) bool { return peers[i].ID < peers[j].ID })
		if err := n.rn.Bootstrap(peers); err != nil {
			return fmt.Errorf("raftnode: bootstrap: %w", err)
		}
	}
	if err := n.cfg.Transport.Start(n); err != nil {
		return fmt.Errorf("raftnode: start transport: %w", err)
	}
	for _, m := range n.cfg.JoinMembers {
		if m.ID != n.cfg.ID {
			n.cfg.Transport.AddPeer(m.ID, m.PeerAddr())
		}
	}
	for _, m := range n.members.list() {
		if m.ID != n.cfg.ID && m.PeerAddr() != "" {
			n.cfg.Transport.AddPeer(m.ID, m.PeerAddr())
		}
	}
	if !fresh && !n.cfg.Join && n.members.isRemoved(n.cfg.ID) {
		n.removed.Store(true)
	}
	last, _ := n.store.LastIndex()
	n.log.Info("raft storage opened", "data_dir", n.cfg.DataDir, "fresh", fresh,
		"snapshot_index", applied, "last_index", last, "wal_entries", len(contents.Entries),
		"wal_repaired_bytes", contents.RepairedBytes)
	return nil
}

// restoreFromFile restores the membership table and the state machine from
// the local snapshot file at index.
func (n *Node) restoreFromFile(index uint64) (*raftpb.SnapshotMetadata, error) {
	rc, meta, err := n.snaps.Open(index)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	members, rest, err := readMembersSection(rc)
	if err != nil {
		return nil, err
	}
	if err := n.sm.Restore(rest); err != nil {
		return nil, err
	}
	n.members.restore(members, meta.GetConfState())
	for _, m := range members.GetMembers() {
		if m.GetId() != n.cfg.ID && !n.members.isRemoved(m.GetId()) {
			n.cfg.Transport.AddPeer(m.GetId(), memberFromProto(m).PeerAddr())
		}
	}
	return meta, nil
}

// HasState reports whether dir holds a node's raft state, in which case a
// restart takes its membership from there and bootstrap flags are ignored.
func HasState(dir string) bool {
	segs, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	return len(segs) > 0
}

// loadClusterID keeps the cluster id with the data: the first start
// records the configured one, later starts use the recorded one.
func (n *Node) loadClusterID() error {
	path := filepath.Join(n.cfg.DataDir, "cluster_id")
	b, err := os.ReadFile(path)
	if err == nil {
		id, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 16, 64)
		if perr != nil {
			return fmt.Errorf("raftnode: %s is damaged: %w", path, perr)
		}
		if n.cfg.ClusterID != 0 && id != n.cfg.ClusterID {
			n.log.Info("using the cluster id recorded in the data dir", "recorded", fmt.Sprintf("%x", id), "configured", fmt.Sprintf("%x", n.cfg.ClusterID))
		}
		n.cfg.ClusterID = id
		return nil
	}
	if !os.IsNotExist(err) {
		return fmt.Errorf("raftnode: read cluster id: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%x\n", n.cfg.ClusterID)), 0o644); err != nil {
		return fmt.Errorf("raftnode: record cluster id: %w", err)
	}
	f, err := os.Open(tmp)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("raftnode: record cluster id: %w", err)
	}
	return nil
}
