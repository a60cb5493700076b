package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func ent(index, term uint64) *raftpb.Entry {
	return &raftpb.Entry{
		Index: proto.Uint64(index),
		Term:  proto.Uint64(term),
		Data:  []byte(fmt.Sprintf("entry-%d-term-%d", index, term)),
	}
}

func ents(from, to, term uint64) []*raftpb.Entry {
	var out []*raftpb.Entry
	for i := from; i <= to; i++ {
		out = append(out, ent(i, term))
	}
	return out
}

func hardState(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: proto.Uint64(term), Vote: proto.Uint64(vote), Commit: proto.Uint64(commit)}
}

func snapMeta(index, term uint64) *raftpb.SnapshotMetadata {
	return &raftpb.SnapshotMetadata{Index: proto.Uint64(index), Term: proto.Uint64(term)}
}

func mustOpen(t testing.TB, dir string, opts Options) (*WAL, *Contents) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	w, c, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return w, c
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// checkEntries compares index, term and data.
func checkEntries(t testing.TB, got, want []*raftpb.Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries %s, want %d %s", len(got), span(got), len(want), span(want))
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("entry %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

func span(es []*raftpb.Entry) string {
	if len(es) == 0 {
		return "[]"
	}
	return fmt.Sprintf("[%d..%d]", es[0].GetIndex(), es[len(es)-1].GetIndex())
}

func checkHardState(t testing.TB, got, want *raftpb.HardState) {
	t.Helper()
	if got.GetTerm() != want.GetTerm() || got.GetVote() != want.GetVote() || got.GetCommit() != want.GetCommit() {
		t.Fatalf("hard state: got %v, want %v", got, want)
	}
}

func concat(parts ...[]*raftpb.Entry) []*raftpb.Entry {
	var out []*raftpb.Entry
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name      string
		segSize   int64
		run       func(t *testing.T, w *WAL)
		wantSnap  uint64
		wantHS    *raftpb.HardState
		wantEnts  []*raftpb.Entry
		minSegs   int
		wantEmpty bool
	}{
		{
			name:   "empty",
			run:    func(t *testing.T, w *WAL) {},
			wantHS: &raftpb.HardState{},
		},
		{
			name: "entries and hard states",
			run: func(t *testing.T, w *WAL) {
				must(t, w.Save(hardState(1, 1, 0), ents(1, 5, 1)))
				must(t, w.Save(hardState(2, 1, 3), ents(6, 10, 2)))
			},
			wantHS:   hardState(2, 1, 3),
			wantEnts: concat(ents(1, 5, 1), ents(6, 10, 2)),
		},
		{
			name: "empty hard state is skipped",
			run: func(t *testing.T, w *WAL) {
				must(t, w.Save(hardState(3, 2, 1), ents(1, 2, 3)))
				must(t, w.Save(nil, ents(3, 3, 3)))
				must(t, w.Save(&raftpb.HardState{}, ents(4, 4, 3)))
			},
			wantHS:   hardState(3, 2, 1),
			wantEnts: ents(1, 4, 3),
		},
		{
			name: "overwrite truncates the tail",
			run: func(t *testing.T, w *WAL) {
				must(t, w.Save(hardState(1, 1, 5), ents(1, 10, 1)))
				must(t, w.Save(hardState(2, 2, 5), ents(6, 8, 2)))
			},
			wantHS:   hardState(2, 2, 5),
			wantEnts: concat(ents(1, 5, 1), ents(6, 8, 2)),
		},
		{
			name: "overwrite from the first entry",
			run: func(t *testing.T, w *WAL) {
				must(t, w.Save(nil, ents(1, 5, 1)))
				must(t, w.Save(nil, ents(1, 2, 2)))
			},
			wantHS:   &raftpb.HardState{},
			wantEnts: ents(1, 2, 2),
		},
		{
			name: "snapshot marker drops covered entries",
			run: func(t *testing.T, w *WAL) {
				must(t, w.Save(hardState(1, 1, 10), ents(1, 10, 1)))
				must(t, w.SaveSnapshot(snapMeta(7, 1)))
			},
			wantSnap: 7,
			wantHS:   hardState(1, 1, 10),
			wantEnts: ents(8, 10, 1),
		},
		{
			name: "snapshot beyond the log (follower install)",
			run: func(t *testing.T, w *WAL) {
				must(t, w.Save(hardState(1, 1, 3), ents(1, 5, 1)))
				must(t, w.SaveSnapshot(snapMeta(100, 3)))
				must(t, w.Save(hardState(3, 0, 100), ents(101, 103, 3)))
			},
			wantSnap: 100,
			wantHS:   hardState(3, 0, 100),
			wantEnts: ents(101, 103, 3),
		},
		{
			name:    "rotation over small segments",
			segSize: 1024,
			run: func(t *testing.T, w *WAL) {
				for i := uint64(1); i <= 200; i++ {
					must(t, w.Save(hardState(1, 1, i-1), ents(i, i, 1)))
				}
				must(t, w.Save(hardState(2, 1, 149), ents(150, 160, 2))) // overwrite across segments
			},
			wantHS:   hardState(2, 1, 149),
			wantEnts: concat(ents(1, 149, 1), ents(150, 160, 2)),
			minSegs:  5,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{SegmentSize: tc.segSize}
			w, c := mustOpen(t, dir, opts)
			if len(c.Entries) != 0 || c.Snapshot.GetIndex() != 0 {
				t.Fatalf("fresh WAL recovered %v", c)
			}
			tc.run(t, w)
			must(t, w.Close())
			if got := w.Stats().Segments; got < tc.minSegs {
				t.Fatalf("segments = %d, want >= %d", got, tc.minSegs)
			}
			// Reopen twice: recovery must be repeatable and positioned for append.
			for round := 0; round < 2; round++ {
				w, c = mustOpen(t, dir, opts)
				if c.Snapshot.GetIndex() != tc.wantSnap {
					t.Fatalf("snapshot index %d, want %d", c.Snapshot.GetIndex(), tc.wantSnap)
				}
				checkHardState(t, c.HardState, tc.wantHS)
				checkEntries(t, c.Entries, tc.wantEnts)
				if c.RepairedBytes != 0 {
					t.Fatalf("repaired %d bytes of a clean WAL", c.RepairedBytes)
				}
				must(t, w.Close())
			}
			// Appending after reopen lands after the recovered log.
			next := tc.wantSnap + 1
			if n := len(tc.wantEnts); n > 0 {
				next = tc.wantEnts[n-1].GetIndex() + 1
			}
			w, _ = mustOpen(t, dir, opts)
			must(t, w.Save(hardState(9, 9, next), ents(next, next+2, 9)))
			must(t, w.Close())
			_, c = mustOpen(t, dir, opts)
			checkEntries(t, c.Entries, concat(tc.wantEnts, ents(next, next+2, 9)))
			checkHardState(t, c.HardState, hardState(9, 9, next))
		})
	}
}

func TestSaveRejectsGaps(t *testing.T) {
	w, _ := mustOpen(t, t.TempDir(), Options{})
	defer w.Close()
	must(t, w.Save(nil, ents(1, 3, 1)))
	must(t, w.Flush())
	before := w.Stats().BytesWritten
	for _, bad := range [][]*raftpb.Entry{
		ents(5, 5, 1),
		{ent(4, 1), ent(6, 1)},
		{ent(0, 1)},
	} {
		if err := w.Save(hardState(1, 1, 1), bad); !errors.Is(err, ErrNotContiguous) {
			t.Fatalf("Save(%s) = %v, want ErrNotContiguous", span(bad), err)
		}
	}
	must(t, w.SaveSnapshot(snapMeta(3, 1)))
	if err := w.Save(nil, ents(3, 3, 1)); !errors.Is(err, ErrNotContiguous) {
		t.Fatalf("entry at snapshot index accepted: %v", err)
	}
	if err := w.Save(hardState(1, 1, 4), nil); !errors.Is(err, ErrNotContiguous) {
		t.Fatalf("commit index beyond the log accepted: %v", err)
	}
	must(t, w.Flush())
	if got := w.Stats().BytesWritten - before; got == 0 || got > 64 {
		t.Fatalf("rejected saves wrote bytes: %d written besides the marker", got)
	}
}

func TestSyncAndStats(t *testing.T) {
	dir := t.TempDir()
	w, _ := mustOpen(t, dir, Options{})
	base := w.Stats()
	if base.Segments != 1 || base.Syncs == 0 {
		t.Fatalf("fresh stats %+v", base)
	}
	must(t, w.Sync())
	if got := w.Stats().Syncs; got != base.Syncs {
		t.Fatalf("Sync with nothing written fsynced (%d -> %d)", base.Syncs, got)
	}
	must(t, w.Save(hardState(1, 1, 0), ents(1, 1, 1)))
	must(t, w.Flush())
	must(t, w.Sync())
	must(t, w.Sync())
	st := w.Stats()
	if st.Syncs != base.Syncs+1 || st.BytesWritten <= base.BytesWritten || st.SyncDuration <= 0 {
		t.Fatalf("stats after one sync %+v (base %+v)", st, base)
	}
	fi, err := os.Stat(filepath.Join(dir, segment{seq: 0, first: 1}.name()))
	must(t, err)
	if fi.Size() != st.BytesWritten {
		t.Fatalf("segment size %d != bytes written %d", fi.Size(), st.BytesWritten)
	}
	must(t, w.Close())
	must(t, w.Close())
	if err := w.Save(nil, ents(2, 2, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Save after Close = %v", err)
	}
}

func TestReleaseTo(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 2048}
	w, _ := mustOpen(t, dir, opts)
	must(t, w.Save(hardState(1, 1, 0), nil)) // only ever recorded in the first segment
	for i := uint64(1); i <= 300; i++ {
		must(t, w.Save(nil, ents(i, i, 1)))
	}
	must(t, w.Sync())
	segsBefore := w.Stats().Segments
	if segsBefore < 5 {
		t.Fatalf("only %d segments", segsBefore)
	}
	if err := w.ReleaseTo(200); !errors.Is(err, ErrReleaseBeyondSnapshot) {
		t.Fatalf("ReleaseTo without a snapshot = %v", err)
	}
	must(t, w.SaveSnapshot(snapMeta(200, 1)))
	must(t, w.ReleaseTo(200))
	segsAfter := w.Stats().Segments
	if segsAfter >= segsBefore {
		t.Fatalf("ReleaseTo deleted nothing (%d segments)", segsAfter)
	}
	segs, err := listSegments(dir)
	must(t, err)
	if len(segs) != segsAfter {
		t.Fatalf("%d files, stats say %d", len(segs), segsAfter)
	}
	// Everything above the release index must still be on disk.
	if segs[0].first > 201 {
		t.Fatalf("oldest remaining segment starts at %d, entries 201.. lost", segs[0].first)
	}
	must(t, w.Save(nil, ents(301, 310, 2)))
	must(t, w.Close())

	w, c := mustOpen(t, dir, opts)
	if c.Snapshot.GetIndex() != 200 || c.Snapshot.GetTerm() != 1 {
		t.Fatalf("snapshot %v", c.Snapshot)
	}
	checkHardState(t, c.HardState, hardState(1, 1, 0))
	checkEntries(t, c.Entries, concat(ents(201, 300, 1), ents(301, 310, 2)))

	// Releasing everything keeps the current segment, which alone describes the log.
	must(t, w.SaveSnapshot(snapMeta(310, 2)))
	must(t, w.ReleaseTo(310))
	if got := w.Stats().Segments; got != 1 {
		t.Fatalf("%d segments after releasing everything", got)
	}
	must(t, w.Close())
	_, c = mustOpen(t, dir, opts)
	if c.Snapshot.GetIndex() != 310 || len(c.Entries) != 0 {
		t.Fatalf("after full release: snapshot %v, %d entries", c.Snapshot, len(c.Entries))
	}
	checkHardState(t, c.HardState, hardState(1, 1, 0))
}

// fileSize returns the size of the single live segment after a Sync.
func currentSize(t testing.TB, dir string) int64 {
	t.Helper()
	segs, err := listSegments(dir)
	must(t, err)
	fi, err := os.Stat(segmentPath(dir, segs[len(segs)-1]))
	must(t, err)
	return fi.Size()
}

func lastSegmentPath(t testing.TB, dir string) string {
	t.Helper()
	segs, err := listSegments(dir)
	must(t, err)
	return segmentPath(dir, segs[len(segs)-1])
}

func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	des, err := os.ReadDir(src)
	must(t, err)
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(src, de.Name()))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(dst, de.Name()), b, 0o640))
	}
	return dst
}

// buildLog writes n single-entry Saves (a hard state every 5th) and returns
// the record boundaries of the current segment: bounds[i] is where the i-th
// Save's records start, bounds[n] the end.
func buildLog(t testing.TB, dir string, n uint64, segSize int64) []int64 {
	t.Helper()
	w, _ := mustOpen(t, dir, Options{SegmentSize: segSize})
	var bounds []int64
	for i := uint64(1); i <= n; i++ {
		bounds = append(bounds, currentSize(t, dir))
		var hs *raftpb.HardState
		if i%5 == 0 {
			hs = hardState(1, 1, i-1)
		}
		must(t, w.Save(hs, ents(i, i, 1)))
		must(t, w.Sync())
	}
	bounds = append(bounds, currentSize(t, dir))
	must(t, w.Close())
	return bounds
}

func TestTornTail(t *testing.T) {
	for _, segSize := range []int64{0, 1500} {
		t.Run(fmt.Sprintf("segsize=%d", segSize), func(t *testing.T) {
			const n = 12
			src := t.TempDir()
			bounds := buildLog(t, src, n, segSize)
			lastStart, lastEnd := bounds[n-1], bounds[n]
			if segSize > 0 && lastStart == 0 {
				t.Fatal("last record opened a segment; pick another size")
			}
			for cut := lastStart + 1; cut < lastEnd; cut++ {
				dir := copyDir(t, src)
				path := lastSegmentPath(t, dir)
				must(t, os.Truncate(path, cut))

				var logBuf bytes.Buffer
				logger := slog.New(slog.NewTextHandler(&logBuf, nil))
				w, c, err := Open(dir, Options{SegmentSize: segSize, Logger: logger})
				if err != nil {
					t.Fatalf("cut at %d: Open: %v", cut, err)
				}
				logLine := logBuf.String()
				if strings.Count(logLine, "\n") != 1 || !strings.Contains(logLine, path) ||
					!strings.Contains(logLine, fmt.Sprintf(" offset=%d bytes_dropped=%d ", lastStart, cut-lastStart)) {
					t.Fatalf("cut at %d: repair log %q, want one line naming file, offset and bytes removed", cut, logLine)
				}
				checkEntries(t, c.Entries, ents(1, n-1, 1))
				if c.RepairedBytes != cut-lastStart {
					t.Fatalf("cut at %d: repaired %d, want %d", cut, c.RepairedBytes, cut-lastStart)
				}
				if fi, _ := os.Stat(path); fi.Size() != lastStart {
					t.Fatalf("cut at %d: file is %d bytes after repair, want %d", cut, fi.Size(), lastStart)
				}
				replacement := ent(n, 2)
				must(t, w.Save(hardState(2, 1, n-1), []*raftpb.Entry{replacement}))
				must(t, w.Close())
				_, c = mustOpen(t, dir, Options{SegmentSize: segSize})
				checkEntries(t, c.Entries, concat(ents(1, n-1, 1), []*raftpb.Entry{replacement}))
				checkHardState(t, c.HardState, hardState(2, 1, n-1))
				if c.RepairedBytes != 0 {
					t.Fatalf("cut at %d: second open repaired %d", cut, c.RepairedBytes)
				}
			}
		})
	}
}

// A final record that reached its full length but whose bytes are wrong
// (the tail of a torn write) is repaired, not refused.
func TestTornTailFullLength(t *testing.T) {
	const n = 8
	src := t.TempDir()
	bounds := buildLog(t, src, n, 0)
	lastStart, lastEnd := bounds[n-1], bounds[n]
	// Flips that leave the length intact: the record provably ends at EOF.
	for _, off := range []int64{lastStart + 6, lastStart + 10, lastStart + 13, lastEnd - 1} {
		dir := copyDir(t, src)
		flipBit(t, lastSegmentPath(t, dir), off, 0)
		_, c, err := Open(dir, Options{Logger: quiet})
		if err != nil {
			t.Fatalf("flip at %d: %v", off, err)
		}
		if c.RepairedBytes != lastEnd-lastStart {
			t.Fatalf("flip at %d: repaired %d, want %d", off, c.RepairedBytes, lastEnd-lastStart)
		}
		checkEntries(t, c.Entries, ents(1, n-1, 1))
	}
	// A damaged length cannot be shown to end at EOF, so even in the final
	// record it is refused rather than guessed at.
	dir := copyDir(t, src)
	path := lastSegmentPath(t, dir)
	flipBit(t, path, lastStart+1, 0)
	wantCorruption(t, dir, path, lastStart)
}

func flipBit(t testing.TB, path string, off int64, bit uint) {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	b[off] ^= 1 << bit
	must(t, os.WriteFile(path, b, 0o640))
}

func wantCorruption(t testing.TB, dir, file string, off int64) {
	t.Helper()
	sizes := map[string]int64{}
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		fi, _ := de.Info()
		sizes[de.Name()] = fi.Size()
	}
	_, _, err := Open(dir, Options{Logger: quiet})
	var ce *CorruptionError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open = %v, want *CorruptionError", err)
	}
	if ce.File != file || ce.Offset != off {
		t.Fatalf("corruption reported at %s:%d, want %s:%d (%v)", ce.File, ce.Offset, file, off, err)
	}
	for name, size := range sizes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Size() != size {
			t.Fatalf("%s changed after refused Open", name)
		}
	}
}

func TestCorruptionInTheMiddle(t *testing.T) {
	const n = 10
	src := t.TempDir()
	bounds := buildLog(t, src, n, 0)
	rec := bounds[3] // Save 4: a single entry record, followed by many more
	end := bounds[4]
	cases := []struct {
		name string
		off  int64
		bit  uint
	}{
		{"length low bit", rec, 0},
		{"length high bit", rec + 3, 7},
		{"payload crc", rec + 5, 3},
		{"header crc", rec + 9, 1},
		{"type byte", rec + 12, 2},
		{"payload", rec + 20, 4},
		{"payload last byte", end - 1, 6},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, src)
			path := lastSegmentPath(t, dir)
			flipBit(t, path, tc.off, tc.bit)
			wantCorruption(t, dir, path, rec)
		})
	}
}

func TestCorruptionAcrossSegments(t *testing.T) {
	src := t.TempDir()
	buildLog(t, src, 40, 400)
	segs, err := listSegments(src)
	must(t, err)
	if len(segs) < 3 {
		t.Fatalf("%d segments", len(segs))
	}
	first := segmentPath(src, segs[0])
	fi, err := os.Stat(first)
	must(t, err)

	t.Run("bad final record of a non-last segment", func(t *testing.T) {
		dir := copyDir(t, src)
		path := filepath.Join(dir, filepath.Base(first))
		// Find the last record's offset by walking the headers.
		b, _ := os.ReadFile(path)
		var off, last int64
		for off < int64(len(b)) {
			last = off
			off += headerSize + int64(b[off]) + int64(b[off+1])<<8
		}
		flipBit(t, path, fi.Size()-1, 0)
		wantCorruption(t, dir, path, last)
	})
	t.Run("torn non-last segment", func(t *testing.T) {
		dir := copyDir(t, src)
		path := filepath.Join(dir, filepath.Base(first))
		must(t, os.Truncate(path, fi.Size()-3))
		_, _, err := Open(dir, Options{Logger: quiet})
		var ce *CorruptionError
		if !errors.As(err, &ce) || ce.File != path {
			t.Fatalf("Open = %v, want corruption in %s", err, path)
		}
		if fi2, _ := os.Stat(path); fi2.Size() != fi.Size()-3 {
			t.Fatal("non-last segment was modified")
		}
	})
	t.Run("missing middle segment", func(t *testing.T) {
		dir := copyDir(t, src)
		must(t, os.Remove(filepath.Join(dir, segs[1].name())))
		_, _, err := Open(dir, Options{Logger: quiet})
		var ce *CorruptionError
		if !errors.As(err, &ce) || ce.File != dir || !strings.Contains(err.Error(), "sequence 1 is missing") {
			t.Fatalf("Open = %v, want missing-sequence corruption naming %s", err, dir)
		}
	})
	t.Run("missing first segment without snapshot", func(t *testing.T) {
		dir := copyDir(t, src)
		must(t, os.Remove(filepath.Join(dir, segs[0].name())))
		if _, _, err := Open(dir, Options{Logger: quiet}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open = %v, want corruption (entries before the chain are lost)", err)
		}
	})
}

// A crash between creating a segment and completing its header leaves an
// empty (or header-torn) last segment; Open must rewrite the header so the
// chain stays self-describing after older segments are released.
func TestCrashDuringRotation(t *testing.T) {
	for _, keep := range []int64{0, 5, headerSize + 5} {
		t.Run(fmt.Sprintf("keep=%d", keep), func(t *testing.T) {
			dir := t.TempDir()
			w, _ := mustOpen(t, dir, Options{})
			must(t, w.Save(hardState(4, 2, 10), ents(1, 10, 4)))
			must(t, w.SaveSnapshot(snapMeta(10, 4)))
			must(t, w.Close())

			// Simulate the next segment, torn at `keep` bytes.
			next := segment{seq: 1, first: 11}
			full := t.TempDir()
			fw, _ := mustOpen(t, full, Options{})
			fw.st, fw.hs = logState{lastIndex: 10, snapIndex: 10, snapTerm: 4}, hardState(4, 2, 10)
			must(t, fw.maybeRotateForTest(next))
			hdr, err := os.ReadFile(segmentPath(full, next))
			must(t, err)
			must(t, fw.Close())
			must(t, os.WriteFile(segmentPath(dir, next), hdr[:keep], 0o640))

			w, c := mustOpen(t, dir, Options{})
			if c.Snapshot.GetIndex() != 10 || len(c.Entries) != 0 {
				t.Fatalf("recovered %v", c)
			}
			must(t, w.Save(nil, ents(11, 12, 4)))
			must(t, w.ReleaseTo(10))
			if w.Stats().Segments != 1 {
				t.Fatalf("old segment not released")
			}
			must(t, w.Close())
			_, c = mustOpen(t, dir, Options{})
			checkHardState(t, c.HardState, hardState(4, 2, 10))
			checkEntries(t, c.Entries, ents(11, 12, 4))
		})
	}
}

// maybeRotateForTest starts segment s regardless of size.
func (w *WAL) maybeRotateForTest(s segment) error {
	if err := w.closeFile(); err != nil {
		return err
	}
	return w.startSegment(s)
}

func TestDecodeRejectsHugeLength(t *testing.T) {
	var buf bytes.Buffer
	rec, err := appendRecord(nil, recEntry, ent(1, 1))
	must(t, err)
	buf.Write(rec)
	rr := newRecordReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if _, err := rr.next(); err != nil {
		t.Fatal(err)
	}
	// A header with a valid checksum but an absurd length.
	h := make([]byte, headerSize)
	h[0], h[1], h[2], h[3] = 0xff, 0xff, 0xff, 0x7f
	le := func(b []byte, v uint32) { b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24) }
	le(h[8:], crc32c(h[:8]))
	data := append(h, make([]byte, 100)...)
	rr = newRecordReader(bytes.NewReader(data), int64(len(data)))
	_, err = rr.next()
	var de *decodeError
	if !errors.As(err, &de) || de.torn {
		t.Fatalf("huge length: %v", err)
	}
	if cap(rr.buf) > 0 {
		t.Fatalf("allocated %d bytes for a rejected record", cap(rr.buf))
	}
}

// A tail of zeros after the last record (zeros written ahead, or a
// filesystem that extended the file before the data landed) is the clean
// end of the log: kept, not repaired, and written over by the next
// records. A zero header followed by anything else is still corruption.
func TestZeroFilledTail(t *testing.T) {
	const n = 6
	src := t.TempDir()
	bounds := buildLog(t, src, n, 0)
	end := bounds[n]
	for _, zeros := range []int64{headerSize + 1, 4096, 100_000} {
		dir := copyDir(t, src)
		path := lastSegmentPath(t, dir)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		must(t, err)
		_, err = f.Write(make([]byte, zeros))
		must(t, err)
		must(t, f.Close())
		size := end + zeros
		w, c, err := Open(dir, Options{Logger: quiet})
		if err != nil {
			t.Fatalf("%d zero bytes: %v", zeros, err)
		}
		if c.RepairedBytes != 0 || c.Repair != nil {
			t.Fatalf("%d zero bytes: repaired %d", zeros, c.RepairedBytes)
		}
		checkEntries(t, c.Entries, ents(1, n, 1))
		must(t, w.Save(hardState(1, 1, n), ents(n+1, n+1, 1)))
		must(t, w.Sync())
		recordsEnd := w.off
		must(t, w.Close())
		if got := currentSize(t, dir); got != max(size, recordsEnd) {
			t.Fatalf("%d zero bytes: the next record was not written over them (size %d, was %d)", zeros, got, size)
		}
		_, c = mustOpen(t, dir, Options{Logger: quiet})
		checkEntries(t, c.Entries, ents(1, n+1, 1))
	}
	dir := copyDir(t, src)
	path := lastSegmentPath(t, dir)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	tail := make([]byte, 4096)
	tail[3000] = 1
	_, err = f.Write(tail)
	must(t, err)
	must(t, f.Close())
	wantCorruption(t, dir, path, end)
}

// With ZeroAhead the current segment keeps zeros written past its records
// (so an fsync has no new length to commit), records land in them, a
// reopen keeps them without a repair, and a segment that rotates out is
// cut back to its last record.
func TestZeroAhead(t *testing.T) {
	const ahead = 16 << 10
	dir := t.TempDir()
	w, _ := mustOpen(t, dir, Options{SegmentSize: 64 << 10, ZeroAhead: ahead, Logger: quiet})
	first := lastSegmentPath(t, dir)
	if got := currentSize(t, dir); got < ahead {
		t.Fatalf("a new segment is %d bytes, want at least %d written ahead", got, ahead)
	}
	var idx uint64
	for range 10 {
		idx++
		must(t, w.Save(hardState(1, 1, idx-1), ents(idx, idx, 1)))
		must(t, w.Sync())
	}
	if got := currentSize(t, dir); got-w.off < ahead/2 || got != w.filled {
		t.Fatalf("size %d, records end at %d: want at least %d bytes of zeros ahead", got, w.off, ahead/2)
	}
	must(t, w.Close())

	var logBuf bytes.Buffer
	w, c := mustOpen(t, dir, Options{SegmentSize: 64 << 10, ZeroAhead: ahead, Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	if c.Repair != nil || logBuf.Len() > 0 {
		t.Fatalf("reopen repaired the zeros: %+v %s", c.Repair, logBuf.String())
	}
	checkEntries(t, c.Entries, ents(1, idx, 1))
	// Enough records to rotate twice.
	for lastSegmentPath(t, dir) == first || len(w.segs) < 3 {
		idx++
		must(t, w.Save(hardState(1, 1, idx-1), []*raftpb.Entry{{Term: proto.Uint64(1), Index: proto.Uint64(idx), Data: make([]byte, 1000)}}))
		must(t, w.Sync())
	}
	must(t, w.Close())
	segs, err := listSegments(dir)
	must(t, err)
	for _, s := range segs[:len(segs)-1] {
		b, err := os.ReadFile(segmentPath(dir, s))
		must(t, err)
		if len(b) >= headerSize && bytes.Equal(b[len(b)-headerSize:], zeroHeader[:]) {
			t.Fatalf("non-final segment %s ends in zeros", s.name())
		}
	}
	_, c = mustOpen(t, dir, Options{Logger: quiet})
	if got := c.Entries[len(c.Entries)-1].GetIndex(); got != idx {
		t.Fatalf("recovered up to %d, want %d", got, idx)
	}
}
