package wal

import (
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func benchEntry() (*raftpb.Entry, *uint64) {
	idx := new(uint64)
	return &raftpb.Entry{Index: idx, Term: proto.Uint64(1), Data: make([]byte, 100)}, idx
}

// BenchmarkSave: one 100-byte entry per Save, no Sync (buffered append cost).
func BenchmarkSave(b *testing.B) {
	w, _ := mustOpen(b, b.TempDir(), Options{})
	defer w.Close()
	e, idx := benchEntry()
	batch := []*raftpb.Entry{e}
	b.SetBytes(100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		*idx = uint64(i + 1)
		if err := w.Save(nil, batch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSaveSync: batches of 64 100-byte entries, then Sync (group commit).
func BenchmarkSaveSync(b *testing.B) {
	w, _ := mustOpen(b, b.TempDir(), Options{})
	defer w.Close()
	const batchSize = 64
	batch := make([]*raftpb.Entry, batchSize)
	idxs := make([]*uint64, batchSize)
	for i := range batch {
		batch[i], idxs[i] = benchEntry()
	}
	hs := hardState(1, 1, 0)
	var next uint64 = 1
	b.SetBytes(batchSize * 100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range batch {
			*idxs[j] = next
			next++
		}
		hs.Commit = proto.Uint64(next - 1)
		if err := w.Save(hs, batch); err != nil {
			b.Fatal(err)
		}
		if err := w.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}
