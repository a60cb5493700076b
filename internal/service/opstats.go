package service

import (
	"math/bits"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// opHistogram is a lock-free log-linear latency histogram in microseconds:
// each power of two is split into 4 buckets, so a percentile read from it is
// within ~19% of the true value. Recording is two atomic adds.
type opHistogram struct {
	count   atomic.Int64
	sumUs   atomic.Int64
	buckets [64 * 4]atomic.Int64
}

func bucketOf(us uint64) int {
	if us < 4 {
		return int(us)
	}
	n := bits.Len64(us) // us in [2^(n-1), 2^n)
	sub := (us >> (n - 3)) & 3
	return n*4 + int(sub) - 8
}

// bucketUpper is the largest value that falls in bucket b.
func bucketUpper(b int) uint64 {
	if b < 4 {
		return uint64(b)
	}
	n := (b + 8) / 4
	sub := uint64((b + 8) % 4)
	lo := uint64(1)<<(n-1) | sub<<(n-3)
	return lo + uint64(1)<<(n-3) - 1
}

func (h *opHistogram) observe(d time.Duration) {
	us := uint64(d.Microseconds())
	h.count.Add(1)
	h.sumUs.Add(int64(us))
	b := bucketOf(us)
	if b >= len(h.buckets) {
		b = len(h.buckets) - 1
	}
	h.buckets[b].Add(1)
}

// quantile returns the upper bound of the bucket holding quantile q.
func (h *opHistogram) quantile(q float64) int64 {
	total := h.count.Load()
	if total == 0 {
		return 0
	}
	rank := int64(q * float64(total))
	if rank >= total {
		rank = total - 1
	}
	var seen int64
	for b := range h.buckets {
		seen += h.buckets[b].Load()
		if seen > rank {
			return int64(bucketUpper(b))
		}
	}
	return int64(bucketUpper(len(h.buckets) - 1))
}

// opRecorder keeps one histogram per operation name (GET, PUT, ...).
type opRecorder struct {
	start time.Time
	mu    sync.RWMutex
	ops   map[string]*opHistogram
	total atomic.Int64
}

func newOpRecorder() *opRecorder {
	return &opRecorder{start: time.Now(), ops: make(map[string]*opHistogram)}
}

func (r *opRecorder) histogram(op string) *opHistogram {
	r.mu.RLock()
	h := r.ops[op]
	r.mu.RUnlock()
	if h != nil {
		return h
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if h = r.ops[op]; h == nil {
		h = &opHistogram{}
		r.ops[op] = h
	}
	return h
}

func (r *opRecorder) observe(op string, d time.Duration) {
	r.total.Add(1)
	r.histogram(op).observe(d)
}

type opSnapshot struct {
	Name                string
	Count               int64
	OpsPerSec           float64
	AvgUs, P95Us, P99Us int64
}

func (r *opRecorder) snapshot() (uptime time.Duration, ops []opSnapshot) {
	uptime = time.Since(r.start)
	r.mu.RLock()
	defer r.mu.RUnlock()
	for name, h := range r.ops {
		c := h.count.Load()
		s := opSnapshot{Name: name, Count: c, P95Us: h.quantile(0.95), P99Us: h.quantile(0.99)}
		if c > 0 {
			s.AvgUs = h.sumUs.Load() / c
		}
		if secs := uptime.Seconds(); secs > 0 {
			s.OpsPerSec = float64(c) / secs
		}
		ops = append(ops, s)
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].Name < ops[j].Name })
	return uptime, ops
}
