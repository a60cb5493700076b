package raftnode

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
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

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
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
//
// A start that fails leaves the data dir as it found it: whatever open
// created (the directory itself, wal/, snap/, LOCK, ...) is removed again.
func (n *Node) open() (err error) {
	_, statErr := os.Stat(n.cfg.DataDir)
	createdDir := os.IsNotExist(statErr)
	if err := os.MkdirAll(n.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("raftnode: create data dir: %w", err)
	}
	if n.lock, err = lockDir(n.cfg.DataDir); err != nil {
		// Whatever is there belongs to the process holding the lock.
		return err
	}
	// Listed under the lock: nobody else creates files here from now on.
	before := listDataDir(n.cfg.DataDir, createdDir)
	defer func() {
		if err != nil {
			if n.wal != nil {
				n.wal.Close()
			}
			n.lock.release()
			before.undo()
		}
	}()
	if err := n.checkMemberID(); err != nil {
		return err
	}
	walDir := filepath.Join(n.cfg.DataDir, "wal")
	// Without segments or a manifest the WAL would start an empty log;
	// cluster_id, written right after the first segment, says there was one.
	if _, err := os.Stat(filepath.Join(walDir, "MANIFEST")); err != nil && !HasWAL(n.cfg.DataDir) {
		if _, err := os.Stat(filepath.Join(n.cfg.DataDir, clusterIDFile)); err == nil {
			return fmt.Errorf("raftnode: data dir %s holds %s but %s holds no WAL segment: the log was lost; refusing to start with an empty one",
				n.cfg.DataDir, clusterIDFile, walDir)
		}
	}
	if err := n.ensureReserve(); err != nil {
		return err
	}
	if n.snaps, err = snap.New(filepath.Join(n.cfg.DataDir, "snap")); err != nil {
		return fmt.Errorf("raftnode: %w", err)
	}
	// The log must reach the newest snapshot file: one is only published
	// once the WAL on disk covers its index.
	var minIndex uint64
	if meta, err := n.snaps.Latest(); err == nil {
		minIndex = meta.GetIndex()
	} else if !errors.Is(err, snap.ErrNoSnapshot) {
		return fmt.Errorf("raftnode: %w", err)
	}
	w, contents, err := wal.Open(walDir, wal.Options{
		SegmentSize: n.cfg.WALSegmentSize,
		// With an fsync per write group, appends land in zeros written
		// ahead, so the fsync has no new file length to commit.
		ZeroAhead: zeroAhead(n.cfg.SyncWrites),
		Logger:    n.cfg.Logger,
		OnSync:    n.cfg.Metrics.WALSynced,
		MinIndex:  minIndex,
		Faults:    n.cfg.WALFaults,
	})
	if err != nil {
		return fmt.Errorf("raftnode: open WAL: %w", err)
	}
	n.wal = w
	n.store = raft.NewMemoryStorage()
	if err := n.loadClusterID(); err != nil {
		return err
	}
	if err := n.recordMemberID(); err != nil {
		return err
	}

	var applied uint64
	if snapIndex := contents.Snapshot.GetIndex(); snapIndex > 0 {
		// A received snapshot the WAL recorded before a crash let it be
		// installed; any other received one was never accepted.
		if err := n.snaps.Install(snapIndex); err != nil {
			return fmt.Errorf("raftnode: WAL names snapshot at index %d: %w", snapIndex, err)
		}
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

	if err := n.snaps.DiscardReceived(); err != nil {
		n.log.Warn("discarding received snapshots never installed", "err", err)
	}
	if n.cfg.Standalone && !fresh {
		if err := n.checkStandalone(contents.Entries); err != nil {
			return err
		}
	}
	if !fresh && n.members.isRemoved(n.cfg.ID) {
		return fmt.Errorf("%w: data dir %s belongs to member %s (id %x), which was removed from the cluster; a removed member cannot come back with its data: start a new member under another -node-id with an empty data dir and -join",
			ErrRemoved, n.cfg.DataDir, n.cfg.Name, n.cfg.ID)
	}
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
		AsyncStorageWrites:        true,
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
	// A Ready carries the HardState only when it changes: publish the one
	// loaded from the WAL now, or a restarted node reports term and commit
	// 0 until the cluster next writes.
	st := n.rn.Status()
	n.term.Store(st.GetTerm())
	n.commit.Store(st.GetCommit())
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
	last, _ := n.store.LastIndex()
	n.log.Info("raft storage opened", "data_dir", n.cfg.DataDir, "fresh", fresh,
		"snapshot_index", applied, "last_index", last, "wal_entries", len(contents.Entries),
		"wal_repaired_bytes", contents.RepairedBytes, "disk_reserve", n.cfg.DiskReserve)
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
	path := n.snaps.Path(meta.GetTerm(), index)
	members, rest, err := readMembersSection(rc)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", path, err)
	}
	if err := n.sm.Restore(rest); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", path, err)
	}
	n.members.restore(members, meta.GetConfState())
	for _, m := range members.GetMembers() {
		if m.GetId() != n.cfg.ID && !n.members.isRemoved(m.GetId()) {
			n.cfg.Transport.AddPeer(m.GetId(), memberFromProto(m).PeerAddr())
		}
	}
	return meta, nil
}

// checkStandalone refuses, for a standalone node, a data dir whose
// membership (the snapshot's, changed by the membership changes in the
// log after it) holds other members: the node could never reach them and
// would wait for a quorum forever.
func (n *Node) checkStandalone(ents []*raftpb.Entry) error {
	members := make(map[uint64]bool)
	for _, m := range n.members.list() {
		members[m.ID] = true
	}
	names := make(map[uint64]string)
	for _, e := range ents {
		var cc raftpb.ConfChange
		if e.GetType() != raftpb.EntryConfChange || proto.Unmarshal(e.GetData(), &cc) != nil {
			continue
		}
		var mem raftv1.Member
		if len(cc.GetContext()) > 0 && proto.Unmarshal(cc.GetContext(), &mem) == nil && mem.GetId() == cc.GetNodeId() && mem.GetName() != "" {
			names[mem.GetId()] = mem.GetName()
		}
		if cc.GetType() == raftpb.ConfChangeType_ConfChangeRemoveNode {
			delete(members, cc.GetNodeId())
		} else {
			members[cc.GetNodeId()] = true
		}
	}
	others := 0
	var list []string
	for id := range members {
		if id != n.cfg.ID {
			others++
		}
		name := names[id]
		if m, ok := n.members.get(id); name == "" && ok && m.Name != "" {
			name = m.Name
		} else if name == "" {
			name = fmt.Sprintf("%x", id)
		}
		list = append(list, name)
	}
	if others == 0 {
		return nil
	}
	sort.Strings(list)
	return fmt.Errorf("raftnode: data dir %s belongs to a cluster of %d members (%s), and a standalone node cannot reach the others: "+
		"start it with -enable-raft=true and peer authentication (-peer-secret-file, or peer mTLS with -peer-address), as the other members run",
		n.cfg.DataDir, len(members), strings.Join(list, ", "))
}

// HasState reports whether dir holds a node's raft state, in which case a
// restart takes its membership from there and bootstrap flags are ignored.
// A data dir whose log was lost still counts: Start then refuses it.
func HasState(dir string) bool {
	if HasWAL(dir) {
		return true
	}
	for _, name := range []string{clusterIDFile, memberIDFile, filepath.Join("wal", "MANIFEST")} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}

// HasWAL reports whether dir holds WAL segment files.
func HasWAL(dir string) bool {
	segs, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	return len(segs) > 0
}

const (
	clusterIDFile = "cluster_id"
	memberIDFile  = "member_id"
)

// checkMemberID refuses a data dir written by another member: its log and
// votes are that member's, and raft would run it as a stranger.
func (n *Node) checkMemberID() error {
	path := filepath.Join(n.cfg.DataDir, memberIDFile)
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("raftnode: read member id: %w", err)
	}
	idText, name, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	id, err := strconv.ParseUint(idText, 16, 64)
	if err != nil {
		return fmt.Errorf("raftnode: %s is damaged: %w", path, err)
	}
	if id != n.cfg.ID {
		return fmt.Errorf("raftnode: data dir %s belongs to member %q (id %x), not to %q (id %x): start it with -node-id=%s, or give this node another -data-dir",
			n.cfg.DataDir, name, id, n.cfg.Name, n.cfg.ID, name)
	}
	return nil
}

// recordMemberID writes the member id file if it is missing.
func (n *Node) recordMemberID() error {
	path := filepath.Join(n.cfg.DataDir, memberIDFile)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	return writeFileDurably(path, fmt.Sprintf("%x %s\n", n.cfg.ID, n.cfg.Name))
}

// writeFileDurably writes path through a synced temp file and a rename.
func writeFileDurably(path, content string) error {
	tmp := path + ".tmp"
	err := os.WriteFile(tmp, []byte(content), 0o644)
	if err == nil {
		var f *os.File
		if f, err = os.Open(tmp); err == nil {
			err = f.Sync()
			f.Close()
		}
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDirOf(path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("raftnode: write %s: %w", path, err)
	}
	return nil
}

// dataDirListing is what a data dir held when open took its lock, so that
// a failed start can remove exactly what it created.
type dataDirListing struct {
	dir     string
	created bool // open created the directory (and its LOCK file)
	names   map[string]bool
}

func listDataDir(dir string, created bool) *dataDirListing {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil // undo then does nothing
	}
	l := &dataDirListing{dir: dir, created: created, names: make(map[string]bool, len(des))}
	for _, de := range des {
		l.names[de.Name()] = true
	}
	return l
}

// undo removes what was created in the data dir since the listing, and
// the directory itself (with its LOCK) if open created it. Call it after
// releasing the lock.
func (l *dataDirListing) undo() {
	if l == nil {
		return
	}
	des, err := os.ReadDir(l.dir)
	if err != nil {
		return
	}
	for _, de := range des {
		if !l.names[de.Name()] {
			os.RemoveAll(filepath.Join(l.dir, de.Name()))
		}
	}
	if l.created {
		os.Remove(filepath.Join(l.dir, "LOCK"))
		os.Remove(l.dir) // only if empty
	}
}

// loadClusterID keeps the cluster id with the data: the first start
// records the configured one (a random one when none is configured), later
// starts use the recorded one.
func (n *Node) loadClusterID() error {
	path := filepath.Join(n.cfg.DataDir, clusterIDFile)
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
	for n.cfg.ClusterID == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		n.cfg.ClusterID = binary.BigEndian.Uint64(b[:])
	}
	return writeFileDurably(path, fmt.Sprintf("%x\n", n.cfg.ClusterID))
}

// walZeroAhead is how far past its records the WAL keeps zeros written
// when every write group is fsynced (wal.Options.ZeroAhead): one slower
// fsync per 2-4 MiB of log commits the file's new length, and the ones
// between only write data.
const walZeroAhead = 4 << 20

func zeroAhead(syncWrites bool) int64 {
	if syncWrites {
		return walZeroAhead
	}
	return 0
}
