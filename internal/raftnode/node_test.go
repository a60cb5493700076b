package raftnode

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
)

// logSM is a state machine that records every command it applies, in
// order: enough to check what raftnode delivers without the engine.
type logSM struct {
	mu      sync.Mutex
	applied uint64
	cmds    []string
}

type logSnap struct {
	index uint64
	cmds  []string
}

func (s *logSnap) Index() uint64 { return s.index }

func (s *logSnap) WriteTo(w io.Writer) (int64, error) {
	bw := bufio.NewWriter(w)
	var n int64
	for _, c := range append([]string{fmt.Sprint(s.index)}, s.cmds...) {
		var hdr [binary.MaxVarintLen64]byte
		k := binary.PutUvarint(hdr[:], uint64(len(c)))
		bw.Write(hdr[:k])
		bw.WriteString(c)
		n += int64(k + len(c))
	}
	return n, bw.Flush()
}

func (s *logSM) Apply(index uint64, data []byte) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied = index
	if data == nil {
		return nil
	}
	s.cmds = append(s.cmds, string(data))
	return len(s.cmds)
}

func (s *logSM) AppliedIndex() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}

func (s *logSM) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &logSnap{index: s.applied, cmds: append([]string(nil), s.cmds...)}
}

func (s *logSM) Restore(r io.Reader) error {
	br := bufio.NewReader(r)
	var items []string
	for {
		n, err := binary.ReadUvarint(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return err
		}
		items = append(items, string(b))
	}
	if len(items) == 0 {
		return errors.New("empty snapshot")
	}
	var idx uint64
	fmt.Sscan(items[0], &idx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied, s.cmds = idx, items[1:]
	return nil
}

func (s *logSM) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.cmds...)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startSingle(t *testing.T, dir string, sm *logSM, mutate func(*Config)) *Node {
	t.Helper()
	cfg := Config{ID: 1, Name: "n1", Address: "mem:n1", ClusterID: 5, DataDir: dir,
		TickInterval: 5 * time.Millisecond, Logger: quietLogger()}
	if mutate != nil {
		mutate(&cfg)
	}
	n, err := Start(cfg, sm)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop() })
	deadline := time.Now().Add(5 * time.Second)
	for n.Status().Leader != cfg.ID {
		if time.Now().After(deadline) {
			t.Fatal("single voter did not elect itself")
		}
		time.Sleep(time.Millisecond)
	}
	return n
}

// proposeOnceLed proposes data on n, again while the cluster has no
// leader yet (the proposal is dropped), until it is applied.
func proposeOnceLed(t *testing.T, ctx context.Context, n *Node, data []byte) {
	t.Helper()
	for {
		_, err := n.Propose(ctx, data)
		if err == nil {
			return
		}
		if !errors.Is(err, ErrProposalDropped) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // no leader yet
	}
}

func TestSingleNodeProposeReadRestart(t *testing.T) {
	dir := t.TempDir()
	sm := &logSM{}
	n := startSingle(t, dir, sm, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; i < 100; i++ {
		v, err := n.Propose(ctx, []byte(fmt.Sprint("cmd-", i)))
		if err != nil {
			t.Fatal(err)
		}
		if v.(int) != i+1 {
			t.Fatalf("proposal %d applied as #%v", i, v)
		}
	}
	if err := n.ReadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if st := n.Status(); st.Applied < st.Commit || st.Commit == 0 || st.State != 2 {
		t.Fatalf("status after ReadIndex = %+v", st)
	}
	// A cancelled context ends the wait.
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if _, err := n.Propose(cctx, []byte("late")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Propose with a cancelled ctx = %v", err)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Propose(ctx, []byte("after stop")); !errors.Is(err, ErrStopped) {
		t.Fatalf("Propose after Stop = %v", err)
	}
	want := sm.commands()

	sm2 := &logSM{}
	n2 := startSingle(t, dir, sm2, nil)
	// Leading does not wait for the replay; a linearizable read does.
	if err := n2.ReadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	got := sm2.commands()
	// The cancelled proposal may or may not have been applied; nothing else differs.
	if len(got) < 100 || fmt.Sprint(got[:100]) != fmt.Sprint(want[:100]) {
		t.Fatalf("replayed %d commands, want the first 100 of %v", len(got), len(want))
	}
}

func TestSnapshotCompactsTheWAL(t *testing.T) {
	dir := t.TempDir()
	sm := &logSM{}
	mutate := func(c *Config) {
		c.SnapshotCount = 50
		c.SnapshotCatchUpEntries = 10
		c.WALSegmentSize = 4 << 10
	}
	n := startSingle(t, dir, sm, mutate)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	payload := make([]byte, 200)
	for i := 0; i < 400; i++ {
		copy(payload, fmt.Sprintf("cmd-%04d", i))
		if _, err := n.Propose(ctx, payload); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for n.Status().SnapshotIndex < 300 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if si := n.Status().SnapshotIndex; si < 300 {
		t.Fatalf("snapshot index %d after 400 proposals with SnapshotCount 50", si)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	// 400 records of ~230 bytes fill ~23 segments of 4 KiB; released
	// segments must be gone.
	if len(segs) > 8 {
		t.Fatalf("%d WAL segments left after snapshots", len(segs))
	}
	// A snapshot is published before the older ones are purged (the WAL
	// goroutine does that once the WAL has reached it): wait, boundedly,
	// for a purge that may still be under way.
	var snaps []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		snaps, _ = filepath.Glob(filepath.Join(dir, "snap", "*.snap"))
		if (len(snaps) > 0 && len(snaps) <= 2) || time.Now().After(deadline) {
			break
		}
	}
	if len(snaps) == 0 || len(snaps) > 2 {
		t.Fatalf("%d snapshot files, want 1 or 2", len(snaps))
	}
	restartReplays(ctx, t, n, sm, dir, mutate)
}

// restartReplays stops n and starts a node on its data dir, which must
// come back with every command sm applied, from the snapshot and the WAL.
func restartReplays(ctx context.Context, t *testing.T, n *Node, sm *logSM, dir string, mutate func(*Config)) {
	t.Helper()
	want := sm.commands()
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	sm2 := &logSM{}
	n2 := startSingle(t, dir, sm2, mutate)
	// Leading does not wait for the replay; a linearizable read does.
	if err := n2.ReadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if got := sm2.commands(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after restart from snapshot + WAL: %d commands, want %d", len(got), len(want))
	}
}

// snapCounter counts the snapshots a node saves, with their sizes.
type snapCounter struct {
	NopMetrics
	mu    sync.Mutex
	sizes []int64
}

func (m *snapCounter) SnapshotSaved(_ time.Duration, bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sizes = append(m.sizes, bytes)
}

func (m *snapCounter) saved() []int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]int64(nil), m.sizes...)
}

// TestLogBoundedInBytes: with entries far below SnapshotCount, the bytes
// they hold call for snapshots (SnapshotBytes, or the last snapshot's size
// when larger, so snapshots of a growing store come further apart), and
// compaction keeps no more than SnapshotCatchUpBytes of entries before the
// snapshot even when SnapshotCatchUpEntries would keep more.
func TestLogBoundedInBytes(t *testing.T) {
	const (
		payloadSize = 1000
		snapBytes   = 16 << 10
		catchUp     = 8 << 10
		proposals   = 400
		// maxProposals bounds the run: the store then holds about 3 MB,
		// log2(3 MB / 16 KiB) + 1 snapshots.
		maxProposals = 3000
	)
	dir := t.TempDir()
	metrics := &snapCounter{}
	sm := &logSM{}
	mutate := func(c *Config) {
		c.SnapshotCount = 1 << 40
		c.SnapshotCatchUpEntries = 1000
		c.SnapshotBytes = snapBytes
		c.SnapshotCatchUpBytes = catchUp
		c.Metrics = metrics
	}
	n := startSingle(t, dir, sm, mutate)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Snapshots are taken by the apply loop as entries come, one at a
	// time: keep proposing (boundedly) until one is past the store's
	// half, however slow this machine is to write them.
	payload := make([]byte, payloadSize)
	var si uint64
	for i := 0; i < proposals || si < proposals/2; i++ {
		if i >= maxProposals {
			t.Fatalf("snapshot index %d after %d proposals of %d bytes with SnapshotBytes %d", si, i, payloadSize, snapBytes)
		}
		copy(payload, fmt.Sprintf("cmd-%04d", i))
		if _, err := n.Propose(ctx, payload); err != nil {
			t.Fatal(err)
		}
		si = n.Status().SnapshotIndex
	}
	// A fixed 16 KiB trigger would have taken one snapshot per 16
	// proposals; one that grows with the store's size about
	// log2(store / 16 KiB) + 1.
	sizes := metrics.saved()
	if len(sizes) < 2 || len(sizes) > 10 {
		t.Fatalf("%d snapshots of sizes %v, want 2 to 10", len(sizes), sizes)
	}
	for i := 1; i < len(sizes); i++ {
		if sizes[i] < 2*sizes[i-1]-int64(payloadSize)*2 {
			t.Errorf("snapshot %d is %d bytes after one of %d: taken before the writes since reached the last one's size", i, sizes[i], sizes[i-1])
		}
	}
	// Each entry holds a payload and its 8-byte id header, counted with
	// entryOverhead; the catch-up bound keeps no more than fit in it. A
	// snapshot may still be being recorded: read the log's first index
	// between two equal snapshot indexes, and before the next compaction.
	perEntry := uint64(payloadSize+idHeaderLen) + entryOverhead
	var first uint64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		si = n.Status().SnapshotIndex
		var err error
		if first, err = n.store.FirstIndex(); err != nil {
			t.Fatal(err)
		}
		if n.Status().SnapshotIndex == si && first <= si+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the in-memory log starts at %d, after the snapshot at %d", first, si)
		}
	}
	if kept := si + 1 - first; kept > catchUp/perEntry {
		t.Fatalf("the in-memory log keeps %d entries up to the snapshot at %d (first %d), want at most %d", kept, si, first, catchUp/perEntry)
	}
	if kept := si + 1 - first; kept < catchUp/perEntry-1 {
		t.Fatalf("the in-memory log keeps %d entries up to the snapshot at %d, want the %d that fit in %d bytes", kept, si, catchUp/perEntry, catchUp)
	}

	// What was compacted comes back from the snapshot and the WAL.
	restartReplays(ctx, t, n, sm, dir, mutate)
}

func TestThreeNodesOverMemNetwork(t *testing.T) {
	net := NewMemNetwork(1)
	defer net.Close()
	members := []Member{{ID: 1, Name: "a", Address: "mem:a"}, {ID: 2, Name: "b", Address: "mem:b"}, {ID: 3, Name: "c", Address: "mem:c"}}
	nodes := make([]*Node, 3)
	sms := make([]*logSM, 3)
	for i := range nodes {
		sms[i] = &logSM{}
		n, err := Start(Config{ID: members[i].ID, Name: members[i].Name, Address: members[i].Address, ClusterID: 5,
			DataDir: t.TempDir(), Peers: members, Transport: net.Transport(members[i].ID),
			TickInterval: 5 * time.Millisecond, Logger: quietLogger()}, sms[i])
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = n
		defer n.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Proposals on every node, followers included, are applied everywhere
	// in the same order.
	for i := 0; i < 30; i++ {
		proposeOnceLed(t, ctx, nodes[i%3], []byte(fmt.Sprint("p", i)))
	}
	for _, n := range nodes {
		if err := n.ReadIndex(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i < 3; i++ {
		if fmt.Sprint(sms[i].commands()) != fmt.Sprint(sms[0].commands()) {
			t.Fatalf("node %d applied %v, node 0 %v", i, sms[i].commands(), sms[0].commands())
		}
	}
	var names []string
	for _, m := range nodes[2].Members() {
		names = append(names, m.Name+"@"+m.Address)
	}
	sort.Strings(names)
	if fmt.Sprint(names) != "[a@mem:a b@mem:b c@mem:c]" {
		t.Fatalf("members = %v", names)
	}
}

// TestRestartedFollowerReportsItsHardState: a follower restarted while the
// cluster is idle reports the term and commit index its WAL holds, not 0
// until the next write (a Ready carries the HardState only when it
// changes).
func TestRestartedFollowerReportsItsHardState(t *testing.T) {
	net := NewMemNetwork(1)
	defer net.Close()
	members := []Member{{ID: 1, Name: "a", Address: "mem:a"}, {ID: 2, Name: "b", Address: "mem:b"}, {ID: 3, Name: "c", Address: "mem:c"}}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	cfg := func(i int, transport Transport, tick time.Duration) Config {
		return Config{ID: members[i].ID, Name: members[i].Name, Address: members[i].Address, ClusterID: 5,
			DataDir: dirs[i], Peers: members, Transport: transport, TickInterval: tick, Logger: quietLogger()}
	}
	nodes := make([]*Node, 3)
	for i := range nodes {
		n, err := Start(cfg(i, net.Transport(members[i].ID), 5*time.Millisecond), &logSM{})
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = n
		defer n.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 5; i++ {
		proposeOnceLed(t, ctx, nodes[0], []byte(fmt.Sprint("p", i)))
	}
	f := 1
	if nodes[f].Status().State == raft.StateLeader {
		f = 2
	}
	if err := nodes[f].ReadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	before := nodes[f].Status()
	if err := nodes[f].Stop(); err != nil {
		t.Fatal(err)
	}
	// Alone on a network of its own and never ticking: nothing but its
	// WAL tells it the term and the commit index.
	alone := NewMemNetwork(1)
	defer alone.Close()
	n, err := Start(cfg(f, alone.Transport(members[f].ID), time.Hour), &logSM{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	if st := n.Status(); st.Term != before.Term || st.Commit != before.Commit || st.Term == 0 {
		t.Fatalf("restarted follower reports term %d commit %d, want %d and %d", st.Term, st.Commit, before.Term, before.Commit)
	}
}

// TestStandaloneRefusesAClusterDataDir: a cluster member's data dir
// started as a standalone node (which serves no raft traffic) is refused
// with a message naming the members, whether the membership comes from
// the log or from a snapshot, and left as it was; a standalone node's own
// data dir restarts.
func TestStandaloneRefusesAClusterDataDir(t *testing.T) {
	for _, snapshotCount := range []uint64{0, 3} {
		t.Run(fmt.Sprintf("snapshot-count=%d", snapshotCount), func(t *testing.T) {
			net := NewMemNetwork(1)
			defer net.Close()
			members := []Member{{ID: 1, Name: "a", Address: "mem:a"}, {ID: 2, Name: "b", Address: "mem:b"}, {ID: 3, Name: "c", Address: "mem:c"}}
			dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
			nodes := make([]*Node, 3)
			for i := range nodes {
				n, err := Start(Config{ID: members[i].ID, Name: members[i].Name, Address: members[i].Address, ClusterID: 5,
					DataDir: dirs[i], Peers: members, Transport: net.Transport(members[i].ID), SnapshotCount: snapshotCount,
					SnapshotCatchUpEntries: 1, TickInterval: 5 * time.Millisecond, Logger: quietLogger()}, &logSM{})
				if err != nil {
					t.Fatal(err)
				}
				nodes[i] = n
				defer n.Stop()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for i := 0; i < 10; i++ {
				proposeOnceLed(t, ctx, nodes[0], []byte(fmt.Sprint("p", i)))
			}
			if err := nodes[1].ReadIndex(ctx); err != nil {
				t.Fatal(err)
			}
			if err := nodes[1].Stop(); err != nil {
				t.Fatal(err)
			}
			if snaps, _ := filepath.Glob(filepath.Join(dirs[1], "snap", "*.snap")); snapshotCount > 0 && len(snaps) == 0 {
				t.Fatal("no snapshot taken: the membership would come from the log alone")
			}
			before := dirListing(t, dirs[1])
			_, err := Start(Config{ID: 2, Name: "b", Address: "mem:b", DataDir: dirs[1], Standalone: true, Logger: quietLogger()}, &logSM{})
			if err == nil {
				t.Fatal("a cluster member's data dir started standalone")
			}
			for _, want := range []string{dirs[1], "cluster of 3 members (a, b, c)", "-enable-raft=true", "peer authentication"} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("refusal %q does not say %q", err, want)
				}
			}
			if after := dirListing(t, dirs[1]); after != before {
				t.Fatalf("a refused start changed the data dir:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	dir := t.TempDir()
	sm := &logSM{}
	n := startSingle(t, dir, sm, func(c *Config) { c.Standalone = true })
	if _, err := n.Propose(context.Background(), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	startSingle(t, dir, &logSM{}, func(c *Config) { c.Standalone = true })
}

// dirListing lists a directory tree's names and sizes.
func dirListing(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s:%d ", path, fi.Size())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// logBuffer collects log lines from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestClusterIDAndMembershipLog: a node configured with no cluster id
// records a random one on its first start and keeps it, saying nothing
// about it on a restart; a restart configured with another id uses the
// recorded one and says so. The membership line shows member ids in hex.
func TestClusterIDAndMembershipLog(t *testing.T) {
	dir := t.TempDir()
	start := func(clusterID uint64) (*Node, *logBuffer) {
		var logs logBuffer
		n := startSingle(t, dir, &logSM{}, func(c *Config) {
			c.ID, c.ClusterID = 0xabcdef, clusterID
			c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		})
		return n, &logs
	}
	n, logs := start(0)
	id := n.ClusterID()
	if id == 0 {
		t.Fatal("no cluster id recorded")
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if out := logs.String(); !strings.Contains(out, "voters=[abcdef]") {
		t.Fatalf("membership line does not show the voter in hex:\n%s", out)
	}
	n, logs = start(0)
	if n.ClusterID() != id {
		t.Fatalf("restart uses cluster id %x, want the recorded %x", n.ClusterID(), id)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if out := logs.String(); strings.Contains(out, "cluster id") {
		t.Fatalf("a restart without a configured cluster id logs about it:\n%s", out)
	}
	n, logs = start(id + 1)
	if n.ClusterID() != id {
		t.Fatalf("restart uses cluster id %x, want the recorded %x", n.ClusterID(), id)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if out := logs.String(); !strings.Contains(out, "using the cluster id recorded in the data dir") {
		t.Fatalf("a restart configured with another cluster id does not say which it uses:\n%s", out)
	}
}
