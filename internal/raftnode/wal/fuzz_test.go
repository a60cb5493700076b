package wal

import (
	"os"
	"path/filepath"
	"runtime/metrics"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// FuzzDecode opens an arbitrary segment file. Open must never panic, and
// whatever the bytes claim, it must not allocate much beyond the file size.
//
// fsync is a no-op here: recovery decides the same with or without it, and
// with real fsyncs (several per run: Open's repair, Save, Close) one run
// took milliseconds, so each input with new coverage took the 5 s slice of
// make test to minimize and only about ten inputs were tried.
func FuzzDecode(f *testing.F) {
	realSync := fsync
	fsync = func(syncer) error { return nil }
	f.Cleanup(func() { fsync = realSync })
	dir := f.TempDir()
	w, _ := mustOpen(f, dir, Options{})
	must(f, w.Save(hardState(1, 1, 0), ents(1, 3, 1)))
	must(f, w.SaveSnapshot(snapMeta(2, 1)))
	must(f, w.Save(hardState(2, 1, 2), []*raftpb.Entry{ent(3, 2), ent(4, 2)}))
	must(f, w.Close())
	valid, err := os.ReadFile(lastSegmentPath(f, dir))
	must(f, err)
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add(valid[:40])
	f.Add([]byte{})
	f.Add(make([]byte, 64))
	huge := append([]byte(nil), valid[:headerSize]...)
	huge[3] = 0x7f
	f.Add(huge)

	name := segment{seq: 0, first: 1}.name()
	// One directory for every run, emptied after each: a t.TempDir per
	// run costs a mkdir and a recursive removal for nothing.
	runDir := filepath.Join(f.TempDir(), "run")
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := runDir
		must(t, os.Mkdir(dir, 0o750))
		defer func() { must(t, os.RemoveAll(dir)) }()
		must(t, os.WriteFile(filepath.Join(dir, name), data, 0o640))
		// With the manifest naming it, as every segment written to has:
		// without one, a segment holding entries is refused unread.
		must(t, os.WriteFile(filepath.Join(dir, manifestName), []byte("newest "+name+"\n"), 0o640))
		// runtime/metrics rather than ReadMemStats, which stops the world
		// twice per run.
		before := heapAllocated()
		w, c, err := Open(dir, Options{Logger: quiet})
		if grew := heapAllocated() - before; grew > 8<<20+uint64(64*len(data)) {
			t.Fatalf("Open of a %d-byte file allocated %d bytes", len(data), grew)
		}
		if err != nil {
			return
		}
		defer w.Close()
		// Whatever was accepted must be a consistent log.
		for i := 1; i < len(c.Entries); i++ {
			if c.Entries[i].GetIndex() != c.Entries[i-1].GetIndex()+1 {
				t.Fatalf("recovered non-contiguous entries")
			}
		}
		if len(c.Entries) > 0 && c.Entries[0].GetIndex() != c.Snapshot.GetIndex()+1 {
			t.Fatalf("entries do not follow the snapshot")
		}
		// The WAL must also accept appends after whatever it recovered.
		next := c.Snapshot.GetIndex() + 1
		if n := len(c.Entries); n > 0 {
			next = c.Entries[n-1].GetIndex() + 1
		}
		if err := w.Save(hardState(9, 9, 0), ents(next, next, 9)); err != nil {
			t.Fatalf("Save after recovery: %v", err)
		}
	})
}

// heapAllocated is the bytes allocated on the heap since the process
// started (runtime.MemStats.TotalAlloc), read without stopping the world.
func heapAllocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
