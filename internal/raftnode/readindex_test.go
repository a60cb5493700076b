package raftnode

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/kvdb/kvdb/internal/raftnode/wal"
)

// TestReadAfterRestartSeesTheLogPastTheRecoveredCommit: the WAL does not
// wait to record a HardState that only moves the commit index, so a crash
// can leave a lone voter's log holding entries it had committed, applied
// and acknowledged past the commit index it recovers. raft answers a lone
// voter's ReadIndex with that commit index at once, even before the
// leader's first entry of its new term is committed; a read after the
// restart must still wait for those entries.
//
// The restarted node's first WAL write holding entries (the empty entry of
// its new term) is held back, so raft answers the read while the tail is
// not committed yet, every time.
func TestReadAfterRestartSeesTheLogPastTheRecoveredCommit(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n := startSingle(t, dir, &logSM{}, nil)
	const head, tail = 10, 3
	for i := 0; i < head; i++ {
		if _, err := n.Propose(ctx, []byte(fmt.Sprint("cmd-", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}

	// What a crash leaves: entries written (and acknowledged) after the
	// last HardState the WAL recorded.
	w, contents, err := wal.Open(filepath.Join(dir, "wal"), wal.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	last := contents.Entries[len(contents.Entries)-1]
	commit := contents.HardState.GetCommit()
	var ents []*raftpb.Entry
	for i := 0; i < tail; i++ {
		data := binary.BigEndian.AppendUint64(nil, uint64(1000+i))
		data = append(data, fmt.Sprint("tail-", i)...)
		ents = append(ents, &raftpb.Entry{Term: proto.Uint64(last.GetTerm()),
			Index: proto.Uint64(last.GetIndex() + 1 + uint64(i)), Type: raftpb.EntryNormal.Enum(), Data: data})
	}
	if err := w.Save(nil, ents); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	tailEnd := last.GetIndex() + tail
	if commit >= tailEnd {
		t.Fatalf("recovered commit index %d already covers the tail ending at %d", commit, tailEnd)
	}

	// Restart, holding back the first write of entries.
	held, release := make(chan struct{}), make(chan struct{})
	var heldOnce, releaseOnce sync.Once
	unhold := func() { releaseOnce.Do(func() { close(release) }) }
	sm := &logSM{}
	n2, err := Start(Config{ID: 1, Name: "n1", Address: "mem:n1", ClusterID: 5, DataDir: dir,
		TickInterval: 5 * time.Millisecond, Logger: quietLogger(),
		beforeWALWrite: func(apps []*raftpb.Message) {
			for _, m := range apps {
				if len(m.GetEntries()) > 0 {
					heldOnce.Do(func() { close(held) })
					<-release
					return
				}
			}
		}}, sm)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Stop()
	defer unhold()
	select {
	case <-held: // elected: its first entry waits here, uncommitted
	case <-ctx.Done():
		t.Fatal("the restarted lone voter never wrote an entry")
	}

	// One read round, answered by raft at once: the index it hands readers.
	req := readRequest{ch: make(chan readResult, 1)}
	n2.readC <- req
	var r readResult
	select {
	case r = <-req.ch:
	case <-ctx.Done():
		t.Fatal("the read round was never answered")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.index <= tailEnd {
		if err := n2.WaitApplied(ctx, r.index); err != nil {
			t.Fatal(err)
		}
		t.Fatalf("read index %d after a restart with the commit index %d recovered and acknowledged entries up to %d: the read saw %d of %d commands",
			r.index, commit, tailEnd, len(sm.commands()), head+tail)
	}

	unhold()
	if err := n2.WaitApplied(ctx, r.index); err != nil {
		t.Fatal(err)
	}
	if got := sm.commands(); len(got) != head+tail || got[head+tail-1] != fmt.Sprint("tail-", tail-1) {
		t.Fatalf("after the read: %v", got)
	}
	// The public path agrees.
	if err := n2.ReadIndex(ctx); err != nil {
		t.Fatal(err)
	}
}
