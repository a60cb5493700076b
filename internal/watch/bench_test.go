package watch

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvdb/kvdb/internal/engine"
)

// benchHub is a store with a hub and streams whose sends only count
// events.
type benchHub struct {
	st   *engine.Store
	hub  *Hub
	sent atomic.Int64
	idx  uint64
	stop context.CancelFunc
}

func newBenchHub(b *testing.B, streams int, create func(s *Stream, i int)) *benchHub {
	st := engine.New()
	h := &benchHub{st: st, hub: NewHub(Config{}, 0)}
	st.SetObserver(h.hub)
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	for i := range streams {
		s := h.hub.NewStream(StreamConfig{}, func(r *Response) error {
			h.sent.Add(int64(len(r.Events)))
			return nil
		})
		create(s, i)
		go s.Run(ctx)
	}
	b.Cleanup(cancel)
	return h
}

func (h *benchHub) put(key string, value []byte) {
	h.idx++
	h.st.Apply(h.idx, []engine.Op{{Type: engine.OpPut, Key: []byte(key), Value: value}})
}

// waitSent waits (bounded) until n events were sent.
func (h *benchHub) waitSent(b *testing.B, n int64) {
	for deadline := time.Now().Add(time.Minute); h.sent.Load() < n; {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d events sent", h.sent.Load(), n)
		}
		runtime.Gosched()
	}
}

// BenchmarkApplyPutObserved is the engine's put with the hub attached and
// no watcher: what recording the history costs the apply loop (compare
// with engine's BenchmarkApplyPut).
func BenchmarkApplyPutObserved(b *testing.B) {
	for _, watchers := range []int{-1, 0, 10_000} {
		name := fmt.Sprintf("idle-watchers=%d", watchers)
		if watchers < 0 {
			name = "no-observer"
		}
		b.Run(name, func(b *testing.B) {
			h := newBenchHub(b, max(watchers, 0), func(s *Stream, i int) {
				if _, err := s.Create(CreateRequest{Key: []byte(fmt.Sprintf("idle/%d", i))}); err != nil {
					b.Fatal(err)
				}
			})
			if watchers < 0 {
				h.st.SetObserver(nil)
			}
			value := make([]byte, 100)
			keys := make([]string, 10_000)
			for i := range keys {
				keys[i] = fmt.Sprintf("key/%08d", i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				h.put(keys[i%len(keys)], value)
			}
		})
	}
}

// BenchmarkApplyPutPrefixWatchers is the engine's put with 10,000 idle
// watchers on 10,000 distinct prefixes (one map look-up per prefix length
// per change, not one comparison per watcher).
func BenchmarkApplyPutPrefixWatchers(b *testing.B) {
	h := newBenchHub(b, 10_000, func(s *Stream, i int) {
		p := []byte(fmt.Sprintf("idle/%05d/", i))
		if _, err := s.Create(CreateRequest{Key: p, End: engine.PrefixEnd(p)}); err != nil {
			b.Fatal(err)
		}
	})
	value := make([]byte, 100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		h.put(fmt.Sprintf("key/%08d", i%10_000), value)
	}
}

// BenchmarkFanout measures commit to send through the hub and the
// senders: 10,000 single-key watchers (one per stream) with writes spread
// over their keys, and 100 watchers of one prefix every write matches.
// events/s is the delivered rate.
func BenchmarkFanout(b *testing.B) {
	value := make([]byte, 100)
	b.Run("keys=10000", func(b *testing.B) {
		h := newBenchHub(b, 10_000, func(s *Stream, i int) {
			if _, err := s.Create(CreateRequest{Key: []byte(fmt.Sprintf("k/%08d", i))}); err != nil {
				b.Fatal(err)
			}
		})
		b.ResetTimer()
		for i := range b.N {
			h.put(fmt.Sprintf("k/%08d", i%10_000), value)
		}
		h.waitSent(b, int64(b.N))
		b.ReportMetric(float64(h.sent.Load())/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("prefix=100", func(b *testing.B) {
		h := newBenchHub(b, 100, func(s *Stream, i int) {
			if _, err := s.Create(CreateRequest{Key: []byte("p/"), End: engine.PrefixEnd([]byte("p/"))}); err != nil {
				b.Fatal(err)
			}
		})
		b.ResetTimer()
		for i := range b.N {
			h.put(fmt.Sprintf("p/%08d", i%10_000), value)
		}
		h.waitSent(b, int64(b.N)*100)
		b.ReportMetric(float64(h.sent.Load())/b.Elapsed().Seconds(), "events/s")
	})
}

// BenchmarkWatcherMemory reports the hub-side heap of one single-key
// watcher on a stream of its own (the gRPC stream's own cost is not
// included; kvdbctl bench watch measures the node's).
func BenchmarkWatcherMemory(b *testing.B) {
	const n = 10_000
	for range b.N {
		st := engine.New()
		hub := NewHub(Config{}, 0)
		st.SetObserver(hub)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		streams := make([]*Stream, n)
		for i := range n {
			streams[i] = hub.NewStream(StreamConfig{}, func(*Response) error { return nil })
			if _, err := streams[i].Create(CreateRequest{Key: []byte(fmt.Sprintf("k/%08d", i))}); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/watcher")
		runtime.KeepAlive(streams)
	}
}

// BenchmarkApplyPutRangeWatchers is the engine's put with idle watchers on
// distinct ranges that are neither one key nor a prefix, none of which the
// writes match: what a change costs the apply loop per watcher registered
// (an interval-tree search, not one comparison per watcher).
func BenchmarkApplyPutRangeWatchers(b *testing.B) {
	for _, n := range []int{0, 1_000, 100_000} {
		b.Run(fmt.Sprintf("ranges=%d", n), func(b *testing.B) {
			const perStream = 1_000
			h := newBenchHub(b, (n+perStream-1)/perStream, func(s *Stream, i int) {
				for j := range min(perStream, n-i*perStream) {
					r := i*perStream + j
					key := []byte(fmt.Sprintf("range/%06d/a", r))
					end := []byte(fmt.Sprintf("range/%06d/c", r))
					if _, err := s.Create(CreateRequest{Key: key, End: end}); err != nil {
						b.Fatal(err)
					}
				}
			})
			// Keys below and above every range: the search walks both
			// sides of the tree.
			value := make([]byte, 100)
			keys := make([]string, 10_000)
			for i := range keys {
				keys[i] = fmt.Sprintf("%s/%08d", []string{"key", "zkey"}[i%2], i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				h.put(keys[i%len(keys)], value)
			}
		})
	}
}
