package snap

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func meta(index, term uint64) *raftpb.SnapshotMetadata {
	return &raftpb.SnapshotMetadata{
		Index:     proto.Uint64(index),
		Term:      proto.Uint64(term),
		ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}},
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// streamBody writes size pseudo-random bytes in chunks and returns their hash.
func streamBody(seed uint64, size int) (func(io.Writer) error, [32]byte) {
	h := sha256.New()
	gen := func(w io.Writer) error {
		r := rand.New(rand.NewPCG(seed, seed))
		chunk := make([]byte, 64<<10)
		for left := size; left > 0; {
			n := min(left, len(chunk))
			for i := range chunk[:n] {
				chunk[i] = byte(r.Uint32())
			}
			if _, err := w.Write(chunk[:n]); err != nil {
				return err
			}
			left -= n
		}
		return nil
	}
	gen(h)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return gen, sum
}

func saveBytes(t testing.TB, s *Snapshotter, index, term uint64, body []byte) {
	t.Helper()
	must(t, s.Save(meta(index, term), func(w io.Writer) error {
		_, err := w.Write(body)
		return err
	}))
}

func TestSaveOpenStreaming(t *testing.T) {
	s, err := New(filepath.Join(t.TempDir(), "snap"))
	must(t, err)
	const size = 10 << 20
	body, sum := streamBody(7, size)
	must(t, s.Save(meta(1000, 5), body))

	got, err := s.Latest()
	must(t, err)
	if got.GetIndex() != 1000 || got.GetTerm() != 5 || len(got.GetConfState().GetVoters()) != 3 {
		t.Fatalf("Latest = %v", got)
	}
	rc, m, err := s.Open(1000)
	must(t, err)
	defer rc.Close()
	if !proto.Equal(m, meta(1000, 5)) {
		t.Fatalf("Open metadata %v", m)
	}
	h := sha256.New()
	n, err := io.Copy(h, rc)
	must(t, err)
	if n != size || !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Fatalf("read %d bytes, hash mismatch=%v", n, !bytes.Equal(h.Sum(nil), sum[:]))
	}
	if _, err := rc.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after end = %v", err)
	}
	if _, _, err := s.Open(999); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("Open(missing) = %v", err)
	}
}

func TestEmptyBodyAndNoSnapshot(t *testing.T) {
	s, err := New(t.TempDir())
	must(t, err)
	if _, err := s.Latest(); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("Latest on empty dir = %v", err)
	}
	saveBytes(t, s, 1, 1, nil)
	rc, _, err := s.Open(1)
	must(t, err)
	b, err := io.ReadAll(rc)
	must(t, err)
	must(t, rc.Close())
	if len(b) != 0 {
		t.Fatalf("empty body read back %d bytes", len(b))
	}
}

func TestLatestPicksNewest(t *testing.T) {
	s, err := New(t.TempDir())
	must(t, err)
	saveBytes(t, s, 10, 1, []byte("a"))
	saveBytes(t, s, 30, 2, []byte("c")) // lower term than the next, higher index
	saveBytes(t, s, 20, 3, []byte("b"))
	got, err := s.Latest()
	must(t, err)
	if got.GetIndex() != 30 {
		t.Fatalf("Latest index %d, want 30", got.GetIndex())
	}
}

func snapPath(s *Snapshotter, index, term uint64) string {
	return filepath.Join(s.dir, fileName(term, index))
}

func flip(t testing.TB, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	if off < 0 {
		off += int64(len(b))
	}
	b[off] ^= 0x10
	must(t, os.WriteFile(path, b, 0o640))
}

func TestCorruptBodyDetectedAtEnd(t *testing.T) {
	s, err := New(t.TempDir())
	must(t, err)
	body := bytes.Repeat([]byte("0123456789"), 100_000)
	saveBytes(t, s, 5, 1, body)
	flip(t, snapPath(s, 5, 1), -trailerSize-500) // near the end of the body

	if got, err := s.Latest(); err != nil || got.GetIndex() != 5 {
		t.Fatalf("body damage must not hide the header: %v, %v", got, err)
	}
	rc, _, err := s.Open(5)
	must(t, err)
	defer rc.Close()
	// The damage is only knowable at the end: early reads succeed.
	first := make([]byte, 4096)
	if _, err := io.ReadFull(rc, first); err != nil {
		t.Fatalf("early read: %v", err)
	}
	rest, err := io.ReadAll(rc)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("end of a damaged body: %v, want ErrCorrupt", err)
	}
	if len(first)+len(rest) != len(body) {
		t.Fatalf("read %d of %d bytes before the error", len(first)+len(rest), len(body))
	}
	if _, err := rc.Read(first); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error is not sticky: %v", err)
	}

	// A damaged trailer checksum is the same failure.
	saveBytes(t, s, 6, 1, body)
	flip(t, snapPath(s, 6, 1), -1)
	rc2, _, err := s.Open(6)
	must(t, err)
	defer rc2.Close()
	if _, err := io.Copy(io.Discard, rc2); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damaged trailer: %v", err)
	}
}

func TestCorruptHeaderSkipped(t *testing.T) {
	cases := []struct {
		name string
		off  int64
		cut  bool
	}{
		{"magic", 2, false},
		{"metadata length", 9, false},
		{"metadata crc", 13, false},
		{"metadata", 20, false},
		{"trailer length", -trailerSize + 1, false},
		{"truncated", -5, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(t.TempDir())
			must(t, err)
			saveBytes(t, s, 10, 1, []byte("older"))
			saveBytes(t, s, 20, 2, []byte("newer"))
			path := snapPath(s, 20, 2)
			if tc.cut {
				fi, _ := os.Stat(path)
				must(t, os.Truncate(path, fi.Size()+tc.off))
			} else {
				flip(t, path, tc.off)
			}
			got, err := s.Latest()
			must(t, err)
			if got.GetIndex() != 10 {
				t.Fatalf("Latest = %d, want fallback to 10", got.GetIndex())
			}
			if _, _, err := s.Open(20); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open(damaged) = %v", err)
			}
		})
	}
}

func TestNameMustMatchMetadata(t *testing.T) {
	s, err := New(t.TempDir())
	must(t, err)
	saveBytes(t, s, 10, 1, []byte("x"))
	saveBytes(t, s, 20, 1, []byte("y"))
	// A file renamed to look newer than it is must not be trusted.
	must(t, os.Rename(snapPath(s, 10, 1), snapPath(s, 30, 1)))
	got, err := s.Latest()
	must(t, err)
	if got.GetIndex() != 20 {
		t.Fatalf("Latest = %d, want 20", got.GetIndex())
	}
}

func TestBodyErrorLeavesNothing(t *testing.T) {
	s, err := New(t.TempDir())
	must(t, err)
	boom := errors.New("boom")
	err = s.Save(meta(7, 1), func(w io.Writer) error {
		w.Write([]byte("partial"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Save = %v", err)
	}
	des, _ := os.ReadDir(s.dir)
	if len(des) != 0 {
		t.Fatalf("left %d files behind", len(des))
	}
	if _, err := s.Latest(); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("Latest = %v", err)
	}
}

func TestPurge(t *testing.T) {
	s, err := New(t.TempDir())
	must(t, err)
	for i := uint64(1); i <= 5; i++ {
		saveBytes(t, s, i*10, 1, []byte(fmt.Sprint(i)))
	}
	must(t, os.WriteFile(filepath.Join(s.dir, "123.snap.tmp"), []byte("debris"), 0o640))
	must(t, os.WriteFile(filepath.Join(s.dir, "unrelated"), []byte("x"), 0o640))
	if err := s.Purge(0); err == nil {
		t.Fatal("Purge(0) accepted")
	}
	must(t, s.Purge(2))
	names := dirNames(t, s.dir)
	want := []string{fileName(1, 40), fileName(1, 50), "unrelated"}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Fatalf("after Purge(2): %v, want %v", names, want)
	}

	// A damaged newest file does not count towards keep.
	saveBytes(t, s, 60, 1, []byte("6"))
	flip(t, snapPath(s, 60, 1), 2)
	must(t, s.Purge(1))
	names = dirNames(t, s.dir)
	want = []string{fileName(1, 50), fileName(1, 60), "unrelated"}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Fatalf("after Purge(1) with damaged newest: %v, want %v", names, want)
	}
	got, err := s.Latest()
	must(t, err)
	if got.GetIndex() != 50 {
		t.Fatalf("Latest = %d", got.GetIndex())
	}
}

func dirNames(t testing.TB, dir string) []string {
	des, err := os.ReadDir(dir)
	must(t, err)
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

// Purge running alongside Saves must never break a Save in flight.
func TestConcurrentSaveAndPurge(t *testing.T) {
	s, err := New(t.TempDir())
	must(t, err)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				idx := uint64(g*100 + i + 1)
				errs <- s.Save(meta(idx, 1), func(w io.Writer) error {
					for j := 0; j < 8; j++ {
						if _, err := w.Write(make([]byte, 4096)); err != nil {
							return err
						}
					}
					return nil
				})
			}
		}(g)
	}
	done := make(chan struct{})
	var purgeErr error
	var purger sync.WaitGroup
	purger.Add(1)
	go func() {
		defer purger.Done()
		for {
			select {
			case <-done:
				return
			default:
				if err := s.Purge(1); err != nil && purgeErr == nil {
					purgeErr = err
				}
			}
		}
	}()
	wg.Wait()
	close(done)
	purger.Wait()
	close(errs)
	must(t, purgeErr)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(t, s.Purge(1))
	if n := len(dirNames(t, s.dir)); n != 1 {
		t.Fatalf("%d files after final Purge(1)", n)
	}
}

// A received snapshot is invisible (Latest, Open) until Install, which is
// idempotent; DiscardReceived drops the ones never installed.
func TestReceivedSnapshotInstall(t *testing.T) {
	s, err := New(t.TempDir())
	must(t, err)
	saveBytes(t, s, 5, 1, []byte("local"))
	must(t, s.SaveReceived(meta(9, 2), func(w io.Writer) error { _, err := w.Write([]byte("received")); return err }))
	must(t, s.SaveReceived(meta(12, 2), func(w io.Writer) error { _, err := w.Write([]byte("stale")); return err }))
	if m, err := s.Latest(); err != nil || m.GetIndex() != 5 {
		t.Fatalf("Latest before Install = %v, %v; want index 5", m, err)
	}
	if _, _, err := s.Open(9); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("Open(9) before Install = %v, want ErrNoSnapshot", err)
	}
	must(t, s.Install(9))
	must(t, s.Install(9)) // already installed: nothing to do
	if m, err := s.Latest(); err != nil || m.GetIndex() != 9 {
		t.Fatalf("Latest after Install = %v, %v; want index 9", m, err)
	}
	if err := s.Install(7); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("Install of a snapshot never received = %v, want ErrNoSnapshot", err)
	}
	must(t, s.DiscardReceived())
	names := dirNames(t, s.dir)
	if len(names) != 2 || names[0] != filepath.Base(snapPath(s, 5, 1)) || names[1] != filepath.Base(snapPath(s, 9, 2)) {
		t.Fatalf("after DiscardReceived: %v", names)
	}
	if got := s.Path(2, 9); got != snapPath(s, 9, 2) {
		t.Fatalf("Path = %s", got)
	}
}
