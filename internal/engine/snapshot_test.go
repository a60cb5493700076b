package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"testing"
	"testing/iotest"
)

// populate builds a store with varied keys, deletes and revisions.
func populate(t testing.TB, n int) *applier {
	a := newApplier()
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("key/%05d", i)
		a.apply(t, put(k, fmt.Sprintf("value-%d", i)))
		if i%3 == 0 {
			a.apply(t, put(k, "again"))
		}
		if i%7 == 0 {
			a.apply(t, del(k))
		}
	}
	a.apply(t, put("\xff\x00bin", ""), put("z", string(bytes.Repeat([]byte{0xab}, 3000))))
	a.idx += 3
	a.MarkApplied(a.idx)
	return a
}

func snapshotBytes(t testing.TB, s *Store) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := s.Snapshot().WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteTo: n=%d len=%d err=%v", n, buf.Len(), err)
	}
	return buf.Bytes()
}

type storeState struct {
	hash  uint64
	rev   int64
	index uint64
	mem   int64
	n     int
	all   []KeyValue
}

func stateOf(s *Store) storeState {
	return storeState{s.Hash(), s.Revision(), s.AppliedIndex(), s.MemoryUsage(), s.Len(),
		s.Range(nil, []byte{0}, RangeOptions{}).KVs}
}

func equalState(t *testing.T, got, want storeState) {
	t.Helper()
	if got.hash != want.hash || got.rev != want.rev || got.index != want.index || got.mem != want.mem || got.n != want.n {
		t.Fatalf("state differs: got hash=%x rev=%d idx=%d mem=%d n=%d, want hash=%x rev=%d idx=%d mem=%d n=%d",
			got.hash, got.rev, got.index, got.mem, got.n, want.hash, want.rev, want.index, want.mem, want.n)
	}
	if len(got.all) != len(want.all) {
		t.Fatalf("key count %d, want %d", len(got.all), len(want.all))
	}
	for i := range got.all {
		g, w := got.all[i], want.all[i]
		if !bytes.Equal(g.Key, w.Key) || !bytes.Equal(g.Value, w.Value) || g.CreateRevision != w.CreateRevision ||
			g.ModRevision != w.ModRevision || g.Version != w.Version {
			t.Fatalf("entry %d: got %+v, want %+v", i, g, w)
		}
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 500} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var src *Store
			if n == 0 {
				src = New()
			} else {
				src = populate(t, n).Store
			}
			data := snapshotBytes(t, src)
			dst := New()
			// Restore over existing content must fully replace it.
			dst.Apply(100000, []Op{put("stale", "x")})
			if err := dst.Restore(bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			equalState(t, stateOf(dst), stateOf(src))
			if msg := dst.checkConsistency(); msg != "" {
				t.Fatal(msg)
			}
			// Reader quirks (1-byte reads) must not matter.
			dst2 := New()
			if err := dst2.Restore(iotest.OneByteReader(bytes.NewReader(data))); err != nil {
				t.Fatal(err)
			}
			equalState(t, stateOf(dst2), stateOf(src))
			// The restored store keeps working from the restored revision.
			rev := dst.Revision()
			if res, ok := dst.Apply(dst.AppliedIndex()+1, []Op{put("new", "1")}); !ok || res.Revision != rev+1 {
				t.Fatalf("apply after restore: %+v %v", res, ok)
			}
		})
	}
}

func TestSnapshotIsolation(t *testing.T) {
	a := populate(t, 300)
	before := stateOf(a.Store)
	sn := a.Snapshot()
	if sn.Index() != before.index || sn.Revision() != before.rev || sn.Len() != before.n || sn.Hash() != before.hash {
		t.Fatalf("snapshot metadata mismatch")
	}
	// Mutate heavily after taking the snapshot.
	a.apply(t, delRange("key/", "key/00150"))
	for i := 0; i < 300; i++ {
		a.apply(t, put(fmt.Sprintf("key/%05d", i), "changed"), put(fmt.Sprintf("new/%d", i), "x"))
	}
	if a.Hash() == before.hash {
		t.Fatal("store did not change")
	}
	var buf bytes.Buffer
	if _, err := sn.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := New()
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	equalState(t, stateOf(r), before)
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n < len(p) {
		return 0, errors.New("disk full")
	}
	w.n -= len(p)
	return len(p), nil
}

func TestSnapshotWriteError(t *testing.T) {
	a := populate(t, 2000)
	if _, err := a.Snapshot().WriteTo(&failWriter{n: 100}); err == nil {
		t.Fatal("expected write error")
	}
}

// reseal recomputes the CRC trailer so a corruption reaches the semantic
// checks instead of failing on the checksum.
func reseal(b []byte) []byte {
	body := b[:len(b)-4]
	out := append([]byte(nil), body...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(body, castagnoli))
}

func TestRestoreCorrupt(t *testing.T) {
	a := newApplier()
	a.apply(t, put("a", "1"))
	a.apply(t, put("b", "22"), put("c", "333"))
	good := snapshotBytes(t, a.Store)
	firstEntry := headerSize // offset of the first entry's key length

	mut := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	hdr := func(b []byte, field int, v uint64) []byte { // field offsets after magic+version
		binary.BigEndian.PutUint64(b[len(snapshotMagic)+2+field:], v)
		return reseal(b)
	}
	bigLen := func(limit uint64) []byte {
		return binary.AppendUvarint(nil, limit+1)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"magic only", good[:8]},
		{"truncated header", good[:headerSize-1]},
		{"truncated in entry", good[:headerSize+3]},
		{"truncated before trailer", good[:len(good)-4]},
		{"truncated trailer", good[:len(good)-1]},
		{"trailing garbage", append(append([]byte(nil), good...), 0)},
		{"bad magic", mut(func(b []byte) []byte { b[0] = 'X'; return reseal(b) })},
		{"bad version", mut(func(b []byte) []byte { b[9] = 3; return reseal(b) })},
		{"bit flip in value", mut(func(b []byte) []byte { b[len(b)-8] ^= 0x10; return b })},
		{"bit flip in trailer", mut(func(b []byte) []byte { b[len(b)-1] ^= 1; return b })},
		{"count too high", mut(func(b []byte) []byte { return hdr(b, 16, 4) })},
		{"count too low", mut(func(b []byte) []byte { return hdr(b, 16, 2) })},
		{"huge count", mut(func(b []byte) []byte { return hdr(b, 16, 1<<62) })},
		{"negative revision", mut(func(b []byte) []byte { return hdr(b, 8, 1<<63) })},
		{"revision below mod", mut(func(b []byte) []byte { return hdr(b, 8, 1) })},
		{"huge key length", mut(func(b []byte) []byte {
			return reseal(append(append(b[:firstEntry:firstEntry], bigLen(MaxKeySize)...), make([]byte, 10)...))
		})},
		{"huge value length", mut(func(b []byte) []byte {
			p := append(b[:firstEntry:firstEntry], 1, 'a')
			return reseal(append(append(p, bigLen(MaxValueSize)...), make([]byte, 10)...))
		})},
		{"max uvarint length", mut(func(b []byte) []byte {
			return reseal(append(append(b[:firstEntry:firstEntry], bytes.Repeat([]byte{0xff}, 9)...), 1, 0, 0, 0, 0))
		})},
		{"overlong varint", mut(func(b []byte) []byte {
			return reseal(append(append(b[:firstEntry:firstEntry], bytes.Repeat([]byte{0xff}, 11)...), 0, 0, 0, 0))
		})},
		{"value length lies (64MiB, short stream)", mut(func(b []byte) []byte {
			p := append(b[:firstEntry:firstEntry], 1, 'a')
			return reseal(append(binary.AppendUvarint(p, MaxValueSize), make([]byte, 100)...))
		})},
		{"zero key length", mut(func(b []byte) []byte { b[firstEntry] = 0; return reseal(b) })},
		{"keys out of order", mut(func(b []byte) []byte {
			// entries: 1 'a' 1 '1' ... ; rename "a" to "z" so it sorts after "b".
			b[firstEntry+1] = 'z'
			return reseal(b)
		})},
		{"duplicate keys", mut(func(b []byte) []byte {
			b[firstEntry+1] = 'b'
			return reseal(b)
		})},
		{"zero version", mut(func(b []byte) []byte {
			// last entry "c"="333" create=2 mod=2 version=1: version varint is
			// the byte before the lease section (an 8-byte count of 0) and the
			// trailer.
			b[len(b)-13] = 0
			return reseal(b)
		})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := populate(t, 50)
			before := stateOf(s.Store)
			err := s.Restore(bytes.NewReader(tc.data))
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("Restore = %v, want ErrCorruptSnapshot", err)
			}
			equalState(t, stateOf(s.Store), before)
		})
	}

	t.Run("reader error", func(t *testing.T) {
		s := New()
		err := s.Restore(io.MultiReader(bytes.NewReader(good[:20]), iotest.ErrReader(errors.New("boom"))))
		if !errors.Is(err, ErrCorruptSnapshot) || s.Len() != 0 {
			t.Fatalf("Restore = %v", err)
		}
	})
	t.Run("good still restores", func(t *testing.T) {
		s := New()
		if err := s.Restore(bytes.NewReader(good)); err != nil {
			t.Fatal(err)
		}
		equalState(t, stateOf(s), stateOf(a.Store))
	})
}

// TestRestoreHugeLengthDoesNotAllocate checks that a length field claiming
// 64 MiB over a short stream fails without allocating anywhere near that.
func TestRestoreHugeLengthDoesNotAllocate(t *testing.T) {
	a := newApplier()
	a.apply(t, put("a", "1"))
	good := snapshotBytes(t, a.Store)
	p := append(append([]byte(nil), good[:headerSize]...), 1, 'a')
	data := reseal(append(binary.AppendUvarint(p, MaxValueSize), make([]byte, 100)...))
	s := New()
	if err := s.Restore(bytes.NewReader(data)); !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("Restore = %v", err)
	}
	var bytesPerRun float64
	res := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_ = s.Restore(bytes.NewReader(data))
		}
	})
	bytesPerRun = float64(res.AllocedBytesPerOp())
	if bytesPerRun > 4<<20 {
		t.Fatalf("Restore of lying stream allocated %.0f bytes/op", bytesPerRun)
	}
	t.Logf("lying 64MiB length: %.0f bytes allocated per Restore", bytesPerRun)
}
