package wal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// TestIntegrity covers what Open refuses or repairs about the chain of
// segment files as a whole. Every refusal must leave the files untouched
// and name the directory (or file) and the lost index range.
func TestIntegrity(t *testing.T) {
	src := t.TempDir()
	buildLog(t, src, 40, 400) // entries 1..40, hard state commit up to 39, several segments
	segs, err := listSegments(src)
	must(t, err)
	if len(segs) < 3 {
		t.Fatalf("%d segments, want at least 3", len(segs))
	}
	last := segs[len(segs)-1]

	tests := []struct {
		name     string
		damage   func(t *testing.T, dir string)
		minIndex uint64
		// wantErr lists substrings of the refusal; empty means Open succeeds.
		wantErr  []string
		wantFile func(dir string) string
		// For a successful open: the last index recovered and the log line.
		wantLast uint64
		wantLog  []string
	}{
		{
			name:     "intact",
			wantLast: 40,
		},
		{
			name:     "missing middle segment",
			damage:   func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, segs[1].name()))) },
			wantErr:  []string{"sequence 1 is missing", "were lost"},
			wantFile: func(dir string) string { return dir },
		},
		{
			name:     "missing newest segment",
			damage:   func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, last.name()))) },
			wantErr:  []string{manifestName, last.name(), "were lost"},
			wantFile: func(dir string) string { return dir },
		},
		{
			name:     "missing oldest segment",
			damage:   func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, segs[0].name()))) },
			wantErr:  []string{"entries start at", "were lost"},
			wantFile: func(dir string) string { return filepath.Join(dir, segs[1].name()) },
		},
		{
			// Without the manifest nothing shows whether newer segments
			// existed: the log may have lost its end.
			name:     "missing manifest",
			damage:   func(t *testing.T, dir string) { must(t, os.Remove(filepath.Join(dir, manifestName))) },
			wantErr:  []string{manifestName + " is missing", segs[0].name(), last.name(), "ends at index 40", "backup", `"newest ` + last.name() + `"`},
			wantFile: func(dir string) string { return dir },
		},
		{
			name: "missing manifest and newest segment",
			damage: func(t *testing.T, dir string) {
				must(t, os.Remove(filepath.Join(dir, manifestName)))
				must(t, os.Remove(filepath.Join(dir, last.name())))
			},
			wantErr:  []string{manifestName + " is missing", segs[len(segs)-2].name(), "backup"},
			wantFile: func(dir string) string { return dir },
		},
		{
			name: "missing manifest, only the first segment left",
			damage: func(t *testing.T, dir string) {
				must(t, os.Remove(filepath.Join(dir, manifestName)))
				for _, s := range segs[1:] {
					must(t, os.Remove(filepath.Join(dir, s.name())))
				}
			},
			wantErr:  []string{manifestName + " is missing", segs[0].name(), "backup"},
			wantFile: func(dir string) string { return dir },
		},
		{
			name: "every segment missing",
			damage: func(t *testing.T, dir string) {
				for _, s := range segs {
					must(t, os.Remove(filepath.Join(dir, s.name())))
				}
			},
			wantErr:  []string{"no segment files", last.name(), "every entry of the log was lost"},
			wantFile: func(dir string) string { return dir },
		},
		{
			name:     "empty newest segment",
			damage:   func(t *testing.T, dir string) { must(t, os.Truncate(filepath.Join(dir, last.name()), 0)) },
			wantErr:  []string{"newest segment is empty", "were lost"},
			wantFile: func(dir string) string { return filepath.Join(dir, last.name()) },
		},
		{
			name:     "empty middle segment",
			damage:   func(t *testing.T, dir string) { must(t, os.Truncate(filepath.Join(dir, segs[1].name()), 0)) },
			wantErr:  []string{"empty segment"},
			wantFile: func(dir string) string { return filepath.Join(dir, segs[1].name()) },
		},
		{
			name:     "log ends before the newest snapshot",
			minIndex: 45,
			wantErr:  []string{"ends at index 40", "snapshot at index 45", "from index 41 to 45 were lost"},
			wantFile: func(dir string) string { return dir },
		},
		{
			name: "log ends before the hard state's commit index",
			damage: func(t *testing.T, dir string) {
				// A hard state whose entries are gone: written past the
				// writer's own check, as damage would leave it.
				w, _ := mustOpen(t, dir, Options{SegmentSize: 400})
				w.buf, err = appendRecord(w.buf, recHardState, hardState(1, 1, 50))
				must(t, err)
				must(t, w.Close())
			},
			wantErr:  []string{"ends at index 40", "index 50 as committed", "from index 41 to 50 were lost"},
			wantFile: func(dir string) string { return dir },
		},
		{
			name: "torn tail of the newest segment",
			damage: func(t *testing.T, dir string) {
				// Half of a record holding entry 41, as a crash mid-write leaves it.
				rec, err := appendRecord(nil, recEntry, ent(41, 1))
				must(t, err)
				appendBytes(t, filepath.Join(dir, last.name()), rec[:len(rec)/2])
			},
			wantLast: 40,
			wantLog:  []string{"repaired torn tail", "bytes_dropped=", `dropped="index 41"`, "last_index_kept=40", last.name()},
		},
		{
			// Zeros written ahead (Options.ZeroAhead), or a filesystem's
			// extension: the clean end of the log, nothing to repair.
			name: "zero-filled tail",
			damage: func(t *testing.T, dir string) {
				appendBytes(t, filepath.Join(dir, last.name()), make([]byte, 4096))
			},
			wantLast: 40,
		},
		{
			name: "torn record in zeros written ahead",
			damage: func(t *testing.T, dir string) {
				rec, err := appendRecord(nil, recEntry, ent(41, 1))
				must(t, err)
				appendBytes(t, filepath.Join(dir, last.name()), append(rec[:len(rec)/2], make([]byte, 4096)...))
			},
			wantLast: 40,
			wantLog:  []string{"repaired torn tail", "payload checksum mismatch", "last_index_kept=40", last.name()},
		},
		{
			name: "torn header in zeros written ahead",
			damage: func(t *testing.T, dir string) {
				rec, err := appendRecord(nil, recEntry, ent(41, 1))
				must(t, err)
				appendBytes(t, filepath.Join(dir, last.name()), append(rec[:5:5], make([]byte, 4096)...))
			},
			wantLast: 40,
			wantLog:  []string{"repaired torn tail", "header checksum mismatch", "last_index_kept=40"},
		},
		{
			// A damaged record with data after it is not a crash's tear.
			name: "damaged record in zeros followed by data",
			damage: func(t *testing.T, dir string) {
				rec, err := appendRecord(nil, recEntry, ent(41, 1))
				must(t, err)
				tail := append(rec[:len(rec)/2], make([]byte, 4096)...)
				tail[len(tail)-100] = 7
				appendBytes(t, filepath.Join(dir, last.name()), tail)
			},
			wantErr:  []string{"payload checksum mismatch"},
			wantFile: func(dir string) string { return filepath.Join(dir, last.name()) },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, src)
			if tc.damage != nil {
				tc.damage(t, dir)
			}
			before := dirState(t, dir)
			var logBuf bytes.Buffer
			w, c, err := Open(dir, Options{SegmentSize: 400, MinIndex: tc.minIndex, Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
			if len(tc.wantErr) > 0 {
				var ce *CorruptionError
				if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Open = %v, want a corruption error", err)
				}
				if want := tc.wantFile(dir); ce.File != want {
					t.Fatalf("error names %s, want %s", ce.File, want)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Fatalf("error %q does not say %q", err, s)
					}
				}
				if after := dirState(t, dir); after != before {
					t.Fatalf("a refused Open changed the directory:\nbefore %s\nafter  %s", before, after)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer w.Close()
			if n := len(c.Entries); n == 0 || c.Entries[n-1].GetIndex() != tc.wantLast {
				t.Fatalf("recovered %s, want the log to end at %d", span(c.Entries), tc.wantLast)
			}
			line := logBuf.String()
			if len(tc.wantLog) == 0 && line != "" {
				t.Fatalf("unexpected log: %s", line)
			}
			if len(tc.wantLog) > 0 && strings.Count(line, "\n") != 1 {
				t.Fatalf("want one log line, got %q", line)
			}
			for _, s := range tc.wantLog {
				if !strings.Contains(line, s) {
					t.Fatalf("log %q does not say %q", line, s)
				}
			}
		})
	}
}

// A crash while a fresh directory gets its first segment can leave that
// segment, complete or torn in its header, without the manifest: nothing
// was ever written to it, so Open starts the log and writes the manifest.
func TestFirstSegmentWithoutManifest(t *testing.T) {
	for _, keep := range []int64{-1, 0, headerSize + 5} {
		t.Run(fmt.Sprintf("keep=%d", keep), func(t *testing.T) {
			dir := t.TempDir()
			w, _ := mustOpen(t, dir, Options{Logger: quiet})
			must(t, w.Close())
			first := segmentPath(dir, segment{seq: 0, first: 1})
			if keep >= 0 {
				must(t, os.Truncate(first, keep))
			}
			must(t, os.Remove(filepath.Join(dir, manifestName)))
			w, c := mustOpen(t, dir, Options{Logger: quiet})
			if len(c.Entries) != 0 || c.Snapshot.GetIndex() != 0 {
				t.Fatalf("recovered %v from a log never written to", c)
			}
			must(t, w.Save(hardState(1, 1, 2), ents(1, 2, 1)))
			must(t, w.Close())
			if _, err := os.Stat(filepath.Join(dir, manifestName)); err != nil {
				t.Fatalf("no manifest after Open: %v", err)
			}
			_, c = mustOpen(t, dir, Options{Logger: quiet})
			checkEntries(t, c.Entries, ents(1, 2, 1))
		})
	}
}

func appendBytes(t testing.TB, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.Write(b)
	must(t, err)
	must(t, f.Close())
}

// dirState lists names and sizes, to show a refused Open modified nothing.
func dirState(t testing.TB, dir string) string {
	t.Helper()
	des, err := os.ReadDir(dir)
	must(t, err)
	var b strings.Builder
	for _, de := range des {
		fi, err := de.Info()
		must(t, err)
		fmt.Fprintf(&b, "%s:%d:%s ", de.Name(), fi.Size(), fi.ModTime())
	}
	return b.String()
}

// TestNoSpaceRetry simulates a full disk with a segment file whose writes fail as on a full disk: Flush and Sync
// fail with ErrNoSpace, the file keeps ending on a record boundary, nothing
// saved is lost, and once space is back the same WAL carries on.
func TestNoSpaceRetry(t *testing.T) {
	dir := t.TempDir()
	w, _ := mustOpen(t, dir, Options{})
	must(t, w.Save(hardState(1, 1, 0), ents(1, 5, 1)))
	must(t, w.Sync())
	good := currentSize(t, dir)

	// Swap the segment's file for one on which every write fails as a full
	// disk does, after a partial write.
	real := w.f
	w.f = fullFile(t, real.(*os.File))
	must(t, w.Save(hardState(1, 1, 5), ents(6, 10, 1)))
	for i := 0; i < 3; i++ {
		if err := w.Sync(); !errors.Is(err, ErrNoSpace) || !IsNoSpace(err) || !strings.Contains(err.Error(), "no space left") {
			t.Fatalf("Sync on a full disk = %v, want ErrNoSpace", err)
		}
		if err := w.Flush(); !errors.Is(err, ErrNoSpace) {
			t.Fatalf("Flush on a full disk = %v, want ErrNoSpace", err)
		}
		if got := currentSize(t, dir); got != good {
			t.Fatalf("segment is %d bytes after a failed write, want %d (cut back to the last record)", got, good)
		}
	}
	// Saves keep being accepted into the buffer meanwhile.
	must(t, w.Save(hardState(1, 1, 10), ents(11, 11, 1)))
	w.f.Close()
	w.f = real
	must(t, w.Sync())
	must(t, w.Close())
	_, c := mustOpen(t, dir, Options{})
	checkEntries(t, c.Entries, ents(1, 11, 1))
	checkHardState(t, c.HardState, hardState(1, 1, 10))
}

// fullFile writes half of what it is given to f, then fails with ENOSPC.
type fullSegment struct{ *os.File }

func fullFile(t testing.TB, f *os.File) segmentFile { return fullSegment{f} }

func (f fullSegment) WriteAt(p []byte, off int64) (int, error) {
	n, _ := f.File.WriteAt(p[:len(p)/2], off)
	return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
}

func (f fullSegment) Close() error { return nil }

// Zeros written ahead never take space records need: when writing them
// fails, what was written is cut off again and no more are written until
// the WAL is reopened; records go on landing in the zeros already there.
func TestZeroAheadGivesWayOnFullDisk(t *testing.T) {
	const ahead = 64 << 10
	dir := t.TempDir()
	w, _ := mustOpen(t, dir, Options{ZeroAhead: ahead, Logger: quiet})
	must(t, w.Save(hardState(1, 1, 0), ents(1, 5, 1)))
	must(t, w.Sync())
	filled := currentSize(t, dir)
	if filled < ahead {
		t.Fatalf("segment is %d bytes, want %d of zeros ahead", filled, ahead)
	}
	// A disk with no block left past the zeros.
	real := w.f
	w.f = limitedFile{real.(*os.File), filled}
	var idx uint64 = 5
	big := make([]byte, 2000)
	for w.off < filled-ahead/2+2000 { // past the point where more zeros are due
		idx++
		must(t, w.Save(hardState(1, 1, idx-1), []*raftpb.Entry{{Term: proto.Uint64(1), Index: proto.Uint64(idx), Data: big}}))
		must(t, w.Sync())
	}
	if w.zeroAhead != 0 {
		t.Fatal("zeros are still written ahead after writing them failed")
	}
	if got := currentSize(t, dir); got != filled {
		t.Fatalf("segment is %d bytes, want %d: the failed zeros were not cut off", got, filled)
	}
	must(t, w.Close())
	_, c := mustOpen(t, dir, Options{Logger: quiet})
	if got := c.Entries[len(c.Entries)-1].GetIndex(); got != idx {
		t.Fatalf("recovered up to %d, want %d", got, idx)
	}
}

// limitedFile fails, as a full disk does, any write that reaches past limit.
type limitedFile struct {
	*os.File
	limit int64
}

func (f limitedFile) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.limit {
		n, _ := f.File.WriteAt(p[:max(0, f.limit-off)], off)
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.File.WriteAt(p, off)
}

// TestTornTailLogDocumented: docs/monitoring.md's row for the torn-tail
// repair names the message, level and fields the line really has.
func TestTornTailLogDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "monitoring.md"))
	must(t, err)
	var row string
	for _, line := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(line, "| torn WAL tail") {
			row = line
		}
	}
	cells := strings.Split(row, "|")
	if len(cells) < 5 {
		t.Fatalf("docs/monitoring.md has no row for the torn-tail repair: %q", row)
	}
	tick := regexp.MustCompile("`([^`]+)`")
	var fields []string
	for _, m := range tick.FindAllStringSubmatch(cells[3], -1) {
		fields = append(fields, m[1])
	}
	msg := strings.Trim(strings.TrimSpace(cells[2]), "`")

	dir := t.TempDir()
	buildLog(t, dir, 5, 4096)
	segs, err := listSegments(dir)
	must(t, err)
	rec, err := appendRecord(nil, recEntry, ent(6, 1))
	must(t, err)
	appendBytes(t, filepath.Join(dir, segs[len(segs)-1].name()), rec[:len(rec)/2])
	var logBuf bytes.Buffer
	w, _, err := Open(dir, Options{SegmentSize: 4096, Logger: slog.New(slog.NewJSONHandler(&logBuf, nil))})
	must(t, err)
	must(t, w.Close())
	var line map[string]any
	must(t, json.Unmarshal(logBuf.Bytes(), &line))
	if line["msg"] != msg {
		t.Errorf("the line says %q, docs/monitoring.md %q", line["msg"], msg)
	}
	if lvl := fmt.Sprint(line["level"]); !strings.Contains(cells[1], "`"+lvl+"`") {
		t.Errorf("the line is at %s, docs/monitoring.md's row %q does not say so", lvl, cells[1])
	}
	for _, f := range fields {
		if _, ok := line[f]; !ok {
			t.Errorf("docs/monitoring.md lists field %q; the line has %v", f, line)
		}
	}
	for k := range line {
		if k != "time" && k != "level" && k != "msg" && !slices.Contains(fields, k) {
			t.Errorf("docs/monitoring.md does not list field %q", k)
		}
	}
}
