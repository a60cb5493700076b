package service

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/raftnode"
)

// TestRestartKeepsEverything writes 10,000 keys (some overwritten, some
// deleted), stops the node and restarts it from its data directory: every
// key comes back with its value and revisions. It runs once replaying only
// the WAL and once with snapshots and WAL compaction in between.
func TestRestartKeepsEverything(t *testing.T) {
	for _, tc := range []struct {
		name          string
		snapshotCount uint64
	}{
		{"wal-only", 1_000_000},
		{"with-snapshots", 1_500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			mutate := func(c *Config) {
				c.Raft.SnapshotCount = tc.snapshotCount
				c.Raft.SnapshotCatchUpEntries = 100
				c.Raft.WALSegmentSize = 256 << 10
			}
			n := startNode(t, dir, mutate)
			// 10,000 writes: a bound for a slow, loaded -race run, not a
			// timing expectation.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			const keys = 10_000
			writeConcurrently(t, 16, keys, func(i int) error {
				_, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte(fmt.Sprintf("key-%05d", i)), Value: []byte(fmt.Sprint("value-", i))})
				return err
			})
			for i := 0; i < 100; i++ {
				if _, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte(fmt.Sprintf("key-%05d", i)), Value: []byte("again")}); err != nil {
					t.Fatal(err)
				}
				if _, err := n.kv.Delete(ctx, &kvdbv1.DeleteRequest{Key: []byte(fmt.Sprintf("key-%05d", keys-1-i))}); err != nil {
					t.Fatal(err)
				}
			}
			before := dump(t, n)
			wantHash, wantRev := n.srv.Store().Hash(), n.srv.Store().Revision()
			n.stop(t)
			if tc.snapshotCount < keys {
				snaps, _ := filepath.Glob(filepath.Join(dir, "snap", "*.snap"))
				if len(snaps) == 0 {
					t.Fatal("no snapshot file was written")
				}
			}

			n2 := startNode(t, dir, mutate)
			after := dump(t, n2)
			if len(after) != keys-100 {
				t.Fatalf("after restart %d keys, want %d", len(after), keys-100)
			}
			for k, v := range before {
				if after[k] != v {
					t.Fatalf("key %s: before %v, after %v", k, v, after[k])
				}
			}
			if h, r := n2.srv.Store().Hash(), n2.srv.Store().Revision(); h != wantHash || r != wantRev {
				t.Fatalf("hash/revision after restart = %x/%d, want %x/%d", h, r, wantHash, wantRev)
			}
			// New writes continue the revision sequence.
			put, err := n2.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte("new"), Value: []byte("v")})
			if err != nil || put.GetHeader().GetRevision() != wantRev+1 {
				t.Fatalf("put after restart: %v %v (want revision %d)", put, err, wantRev+1)
			}
		})
	}
}

type kvRecord struct {
	value                string
	create, mod, version int64
}

func dump(t *testing.T, n *testNode) map[string]kvRecord {
	t.Helper()
	r, err := n.kv.Range(ctxT(t), &kvdbv1.RangeRequest{Prefix: true, Limit: int64(n.srv.core.Limits().MaxRangeLimit)})
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]kvRecord, len(r.GetKvs()))
	for _, kv := range r.GetKvs() {
		out[string(kv.GetKey())] = kvRecord{string(kv.GetValue()), kv.GetCreateRevision(), kv.GetModRevision(), kv.GetVersion()}
	}
	if r.GetMore() {
		t.Fatalf("dump truncated at %d keys", len(out))
	}
	return out
}

// TestTornWALTailNodeStarts cuts the WAL's last segment a few bytes short
// (a write torn by a crash) and checks the node starts and keeps every
// complete record before the cut.
func TestTornWALTailNodeStarts(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, nil)
	ctx := ctxT(t)
	for i := 0; i < 50; i++ {
		if _, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte(fmt.Sprintf("k%02d", i)), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	n.stop(t)
	segs, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	sort.Strings(segs)
	last := segs[len(segs)-1]
	fi, err := os.Stat(last)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(last, fi.Size()-3); err != nil {
		t.Fatal(err)
	}
	n2 := startNode(t, dir, nil)
	got := dump(t, n2)
	// The last record may be the final HardState or the last entry; at most
	// the last put is lost, and nothing before it.
	if len(got) < 49 {
		t.Fatalf("after repair %d keys survive, want at least 49", len(got))
	}
	for i := 0; i < 49; i++ {
		if _, ok := got[fmt.Sprintf("k%02d", i)]; !ok {
			t.Fatalf("k%02d lost", i)
		}
	}
}

var _ = raftnode.ErrStopped

// writeConcurrently calls write(i) for i in [0, total) from workers
// goroutines (worker w takes i = w, w+workers, ...) and fails the test on
// the first error.
func writeConcurrently(t *testing.T, workers, total int, write func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += workers {
				if err := write(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
