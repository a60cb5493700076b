package engine

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
)

// benchKey returns a 16-byte key; the multiplier scatters insertion order.
func benchKey(i int) []byte {
	k := make([]byte, 16)
	copy(k, "bench/k")
	binary.BigEndian.PutUint64(k[8:], uint64(i)*0x9E3779B97F4A7C15)
	return k
}

func benchStore(b *testing.B, n int) (*Store, [][]byte) {
	b.Helper()
	s := New()
	keys := make([][]byte, n)
	val := make([]byte, 64)
	const batch = 1000
	ops := make([]Op, 0, batch)
	idx := uint64(0)
	for i := range keys {
		keys[i] = benchKey(i)
		ops = append(ops, Op{Type: OpPut, Key: keys[i], Value: val})
		if len(ops) == batch || i == n-1 {
			idx++
			s.Apply(idx, ops)
			ops = ops[:0]
		}
	}
	return s, keys
}

// BenchmarkGet walks the key slice in order; the keys are hashed, so map
// accesses are still scattered, but the benchmark's own key loads stay
// sequential.
func BenchmarkGet(b *testing.B) {
	s, keys := benchStore(b, 100_000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := s.Get(keys[i%len(keys)]); !ok {
			b.Fatal("missing")
		}
	}
}

// BenchmarkGetRandom also randomises the benchmark's own key loads, adding
// two cache misses per op that are not the store's.
func BenchmarkGetRandom(b *testing.B) {
	s, keys := benchStore(b, 100_000)
	order := rand.Perm(len(keys))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := s.Get(keys[order[i%len(order)]]); !ok {
			b.Fatal("missing")
		}
	}
}

func BenchmarkGetParallel(b *testing.B) {
	s, keys := benchStore(b, 100_000)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(len(keys))
		for pb.Next() {
			i = (i + 7919) % len(keys)
			if _, ok := s.Get(keys[i]); !ok {
				b.Fatal("missing")
			}
		}
	})
}

func BenchmarkApplyPut(b *testing.B) {
	s, keys := benchStore(b, 100_000)
	val := make([]byte, 64)
	ops := make([]Op, 1)
	idx := s.AppliedIndex()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Half overwrites of existing keys, half new keys.
		var k []byte
		if i%2 == 0 {
			k = keys[i%len(keys)]
		} else {
			k = benchKey(len(keys) + i)
		}
		ops[0] = Op{Type: OpPut, Key: k, Value: val}
		idx++
		s.Apply(idx, ops)
	}
}

// BenchmarkRange100 reads [k_i, k_i+100) in key order.
func BenchmarkRange100(b *testing.B) {
	s, keys := benchStore(b, 100_000)
	slices.SortFunc(keys, bytes.Compare)
	n := len(keys) - 100
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := (i * 7919) % n
		r := s.Range(keys[j], keys[j+100], RangeOptions{})
		if len(r.KVs) != 100 {
			b.Fatal("wrong size", len(r.KVs))
		}
	}
}

// BenchmarkRangeLimit100Open reads the first 100 keys of an open-ended range
// ([k, end of keyspace), Limit 100) and must still report the full Count.
func BenchmarkRangeLimit100Open(b *testing.B) {
	s, keys := benchStore(b, 100_000)
	slices.SortFunc(keys, bytes.Compare)
	n := len(keys) / 2 // at least 50k keys remain after the start
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := (i * 7919) % n
		r := s.Range(keys[j], []byte{0}, RangeOptions{Limit: 100})
		if len(r.KVs) != 100 || !r.More || r.Count != int64(len(keys)-j) {
			b.Fatal("wrong result", len(r.KVs), r.Count)
		}
	}
}

func BenchmarkSnapshotWrite(b *testing.B) {
	s, _ := benchStore(b, 100_000)
	b.ReportAllocs()
	b.ResetTimer()
	var n int64
	for i := 0; i < b.N; i++ {
		var err error
		n, err = s.Snapshot().WriteTo(io.Discard)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(n)
}

func BenchmarkRestore(b *testing.B) {
	s, _ := benchStore(b, 100_000)
	var buf []byte
	{
		w := &sliceWriter{}
		if _, err := s.Snapshot().WriteTo(w); err != nil {
			b.Fatal(err)
		}
		buf = w.b
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := New().Restore(&sliceReader{b: buf}); err != nil {
			b.Fatal(err)
		}
	}
}

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// BenchmarkHeapPerKey measures the real heap cost of 1M keys (16-byte keys,
// 100-byte values) against their logical size (MemoryUsage). Run with
//
//	go test -run='^$' -bench=HeapPerKey -benchtime=1x ./internal/engine/
//
// heap-B/key is HeapAlloc growth after GC per key; overhead-B/key is that
// minus the 116 key+value bytes; logical-B/key is MemoryUsage per key.
func BenchmarkHeapPerKey(b *testing.B) {
	const n = 1_000_000
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = benchKey(i)
	}
	val := make([]byte, 100)
	ops := make([]Op, 0, 1000)
	var heap, logical float64
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := New()
		idx := uint64(0)
		for i, k := range keys {
			ops = append(ops, Op{Type: OpPut, Key: k, Value: val})
			if len(ops) == cap(ops) || i == n-1 {
				idx++
				s.Apply(idx, ops)
				ops = ops[:0]
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(keys)
		heap = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
		logical = float64(s.MemoryUsage()) / n
		runtime.KeepAlive(s)
	}
	b.ReportMetric(heap, "heap-B/key")
	b.ReportMetric(heap-116, "overhead-B/key")
	b.ReportMetric(logical, "logical-B/key")
}

// BenchmarkApplyOverwrite overwrites random keys of a 10,000-key store
// with 256-byte values, 50 puts per applied entry: the shape of the
// servers' write benchmarks (every key already exists).
func BenchmarkApplyOverwrite(b *testing.B) {
	s, keys := benchStore(b, 10_000)
	val := make([]byte, 256)
	ops := make([]Op, 50)
	idx := s.AppliedIndex()
	r := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(ops) {
		for j := range ops {
			ops[j] = Op{Type: OpPut, Key: keys[r.IntN(len(keys))], Value: val}
		}
		idx++
		s.Apply(idx, ops)
	}
}
