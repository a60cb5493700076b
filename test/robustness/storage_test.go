package robustness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// TestWALFileLoss starts a node on a data dir that lost WAL files. Each
// case must refuse to start, name the WAL directory and the lost range,
// and leave the files as they were; the intact copy must still hold every
// acknowledged write.
func TestWALFileLoss(t *testing.T) {
	pristine := filepath.Join(t.TempDir(), "data")
	addr := stFreeAddr(t)
	// Small segments and a snapshot part-way, so the log after the newest
	// snapshot spans several segments.
	flags := []string{"-wal-segment-size=64KiB", "-snapshot-count=1000", "-sync-writes=false"}
	p := stStart(t, addr, pristine, flags...)
	const n = 1800
	stWrite(t, stDial(t, addr), 0, n, 200)
	p.stop(t)
	walDir := func(dir string) string { return filepath.Join(dir, "wal") }
	segs, _ := filepath.Glob(filepath.Join(walDir(pristine), "*.wal"))
	sort.Strings(segs)
	snaps, _ := filepath.Glob(filepath.Join(pristine, "snap", "*.snap"))
	if len(segs) < 3 || len(snaps) == 0 {
		t.Fatalf("setup: %d segments and %d snapshots, want at least 3 and 1", len(segs), len(snaps))
	}
	base := func(i int) string { return filepath.Base(segs[(i+len(segs))%len(segs)]) }

	tests := []struct {
		name   string
		damage func(dir string) error
		want   []string // in the refusal, besides the directory
	}{
		{"every segment removed", func(dir string) error {
			for _, s := range segs {
				if err := os.Remove(filepath.Join(walDir(dir), filepath.Base(s))); err != nil {
					return err
				}
			}
			return nil
		}, []string{"no segment files", "was lost"}},
		{"newest segment removed", func(dir string) error {
			return os.Remove(filepath.Join(walDir(dir), base(-1)))
		}, []string{"MANIFEST", base(-1), "were lost"}},
		{"middle segment removed", func(dir string) error {
			return os.Remove(filepath.Join(walDir(dir), base(1)))
		}, []string{"is missing", "were lost"}},
		{"newest segment emptied", func(dir string) error {
			return os.Truncate(filepath.Join(walDir(dir), base(-1)), 0)
		}, []string{"newest segment is empty", "were lost"}},
		{"MANIFEST removed", func(dir string) error {
			return os.Remove(filepath.Join(walDir(dir), "MANIFEST"))
		}, []string{"MANIFEST is missing", base(-1), "cannot be ruled out", "backup"}},
		{"MANIFEST and newest segment removed", func(dir string) error {
			if err := os.Remove(filepath.Join(walDir(dir), "MANIFEST")); err != nil {
				return err
			}
			return os.Remove(filepath.Join(walDir(dir), base(-1)))
		}, []string{"MANIFEST is missing", base(-2), "cannot be ruled out", "backup"}},
		{"wal directory removed", func(dir string) error {
			return os.RemoveAll(walDir(dir))
		}, []string{"cluster_id", "the log was lost"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			stCopyDir(t, pristine, dir)
			if err := tc.damage(dir); err != nil {
				t.Fatal(err)
			}
			before := stListing(t, dir)
			p := stSpawn(t, stFreeAddr(t), dir, flags...)
			if code := p.wait(t); code != 1 {
				t.Fatalf("exit status %d, want 1\n%s", code, p.out)
			}
			out := p.out.String()
			stContainsAll(t, "the refusal", out, append([]string{walDir(dir)}, tc.want...)...)
			if after := stListing(t, dir); after != before {
				t.Fatalf("a refused start changed the data dir:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	// The undamaged data dir still has everything.
	p = stStart(t, addr, pristine, flags...)
	stVerify(t, stDial(t, addr), n)
	p.stop(t)
}

// TestDataDirOfAnotherMember starts a data dir under another -node-id.
func TestDataDirOfAnotherMember(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	addr := stFreeAddr(t)
	p := stStart(t, addr, dir)
	stWrite(t, stDial(t, addr), 0, 10, 10)
	p.stop(t)
	before := stListing(t, dir)
	p = stSpawn(t, addr, dir, "-node-id=node2")
	if code := p.wait(t); code != 1 {
		t.Fatalf("exit status %d, want 1\n%s", code, p.out)
	}
	stContainsAll(t, "the refusal", p.out.String(), dir, "belongs to member", "node1", "node2", "-node-id=node1")
	if after := stListing(t, dir); after != before {
		t.Fatalf("a refused start changed the data dir:\nbefore %s\nafter  %s", before, after)
	}
	p = stStart(t, addr, dir)
	stVerify(t, stDial(t, addr), 10)
	p.stop(t)
}

// TestFailedStartLeavesNothing starts on a port in use: no data dir appears.
func TestFailedStartLeavesNothing(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := filepath.Join(t.TempDir(), "data")
	p := stSpawn(t, l.Addr().String(), dir)
	if code := p.wait(t); code != 1 {
		t.Fatalf("exit status %d, want 1\n%s", code, p.out)
	}
	stContainsAll(t, "the error", p.out.String(), "cannot listen")
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed start left %s behind (%v)", dir, err)
	}
}

// TestDiskFull fills the data dir's file system (a 32 MiB tmpfs): writes
// fail fast with RESOURCE_EXHAUSTED naming the data dir, reads go on,
// /readyz and kvdb_disk_full say so, and writes resume once space is back,
// without a restart. A restart on the still-full disk exits with status 3
// after one error line and leaves no file behind. No acknowledged write is
// lost.
func TestDiskFull(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot mount a tmpfs to fill (needs root): %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	dir := filepath.Join(mnt, "data")
	addr := stFreeAddr(t)
	flags := []string{"-disk-reserve=1MiB", "-wal-segment-size=1MiB", "-snapshot-count=1000000"}
	p := stStart(t, addr, dir, flags...)
	kv := stDial(t, addr)
	acked := stWrite(t, kv, 0, 200, 1024)

	filler := filepath.Join(mnt, "filler")
	fillUp := func() {
		t.Helper()
		f, err := os.OpenFile(filler, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		chunk := make([]byte, 64<<10)
		for i := 0; i < 32<<20/len(chunk)+1; i++ {
			if _, err := f.Write(chunk); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				return
			}
		}
		t.Fatal("the tmpfs never filled up")
	}
	// writeUntilRefused writes new keys until one is refused; the ones
	// before it are acknowledged. With -sync-writes the WAL keeps zeros
	// written ahead of its records, up to the end of the segment (1 MiB
	// here): writes landing there need no new space and are accepted, so
	// the bound covers a segment's worth of them.
	writeUntilRefused := func() {
		t.Helper()
		val := make([]byte, 1024)
		for i := 0; i < 3000; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := kv.Put(ctx, &kvdbv1.PutRequest{Key: stKey(acked), Value: val})
			cancel()
			if err == nil {
				acked++
				continue
			}
			if st := status.Convert(err); st.Code() != codes.ResourceExhausted ||
				!strings.Contains(st.Message(), "no space left") || !strings.Contains(st.Message(), dir) {
				t.Fatalf("write on a full disk: %v, want RESOURCE_EXHAUSTED naming %s and \"no space left\"", err, dir)
			}
			return
		}
		t.Fatal("writes were never refused on a full disk")
	}
	httpGet := func(path string) (int, string) {
		t.Helper()
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	checkFull := func(full bool) {
		t.Helper()
		code, body := httpGet("/readyz")
		if full != (code == http.StatusServiceUnavailable && strings.Contains(body, "no space left")) {
			t.Fatalf("disk full=%v: /readyz %d %q", full, code, body)
		}
		_, metrics := httpGet("/metrics")
		want := "kvdb_disk_full 0"
		if full {
			want = "kvdb_disk_full 1"
		}
		stContainsAll(t, "/metrics", metrics, want)
	}

	fillUp()
	writeUntilRefused()
	checkFull(true)
	stVerify(t, kv, acked) // reads go on

	// Space comes back: writes resume without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	resumed := false
	for i := 0; i < 300 && !resumed; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := kv.Put(ctx, &kvdbv1.PutRequest{Key: stKey(acked), Value: []byte("after")})
		cancel()
		if err == nil {
			acked++
			resumed = true
		} else if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("write while space returns: %v", err)
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !resumed {
		t.Fatalf("writes did not resume once space was back\n%s", p.out)
	}
	checkFull(false)
	acked += stWrite(t, kv, acked, acked+50, 1024)

	// Full again, then a restart on the still-full disk.
	fillUp()
	writeUntilRefused()
	p.stop(t)
	if testing.Verbose() {
		t.Logf("server log through two full disks:\n%s", p.out)
	}
	before := stListing(t, dir)
	p = stSpawn(t, addr, dir, flags...)
	if code := p.wait(t); code != 3 {
		t.Fatalf("start on a full disk: exit status %d, want 3\n%s", code, p.out)
	}
	out := p.out.String()
	stContainsAll(t, "the start on a full disk", out, "no space left", dir)
	if n := strings.Count(out, "level=ERROR"); n != 1 {
		t.Fatalf("start on a full disk logged %d error lines, want 1:\n%s", n, out)
	}
	if after := stListing(t, dir); after != before {
		t.Fatalf("a failed start changed the data dir:\nbefore %s\nafter  %s", before, after)
	}
	// A fresh data dir on the full disk: the same, and nothing is left.
	fresh := filepath.Join(mnt, "fresh")
	p = stSpawn(t, addr, fresh, flags...)
	if code := p.wait(t); code != 3 {
		t.Fatalf("fresh start on a full disk: exit status %d, want 3\n%s", code, p.out)
	}
	if _, err := os.Stat(fresh); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed start left %s behind (%v)", fresh, err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	p = stStart(t, addr, dir, flags...)
	kv = stDial(t, addr)
	stVerify(t, kv, acked)
	acked += stWrite(t, kv, acked, acked+10, 1024)
	p.stop(t)
	t.Logf("%d acknowledged writes, all read back after the disk filled twice and a restart", acked)
}

// stListing lists a tree's files with their sizes.
func stListing(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if fi.IsDir() {
			fmt.Fprintf(&b, "%s/ ", rel)
		} else {
			fmt.Fprintf(&b, "%s:%d:%s ", rel, fi.Size(), fi.ModTime())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
