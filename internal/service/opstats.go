package service

import (
	"math/bits"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvdb/kvdb/internal/core"
)

// Operation latencies are recorded once, here, and read two ways: STATS
// (metrics.operations: count, ops/s, average, p95, p99 in µs) and the
// Prometheus histogram kvdb_operation_duration_seconds, which this recorder
// exports as a collector. Both are views of the same counters, so they
// always agree.

// opHistogram is a lock-free log-linear latency histogram over whole
// microseconds: each power of two is split into 4 buckets, so a percentile
// read from it is within ~19% of the true value. Recording is two atomic
// adds.
type opHistogram struct {
	sumNs   atomic.Int64
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
	if d < 0 {
		d = 0
	}
	us := uint64(d.Microseconds())
	h.sumNs.Add(int64(d))
	b := bucketOf(us)
	if b >= len(h.buckets) {
		b = len(h.buckets) - 1
	}
	h.buckets[b].Add(1)
}

// quantile returns the upper bound, in µs, of the bucket holding quantile q.
func quantile(counts *[64 * 4]int64, total int64, q float64) int64 {
	if total == 0 {
		return 0
	}
	rank := int64(q * float64(total))
	if rank >= total {
		rank = total - 1
	}
	var seen int64
	for b := range counts {
		seen += counts[b]
		if seen > rank {
			return int64(bucketUpper(b))
		}
	}
	return int64(bucketUpper(len(counts) - 1))
}

// promBounds are the exported bucket bounds: powers of two from 1 µs to
// ~8.4 s. Each is the lower edge of a fine bucket, so the exported
// cumulative counts are exact sums of fine buckets (an observation of d
// whole microseconds is counted in le=2^k µs exactly when d < 2^k).
var promBounds = func() []float64 {
	var out []float64
	for k := 0; k <= 23; k++ {
		out = append(out, float64(uint64(1)<<k)/1e6)
	}
	return out
}()

// opKey names one recorded operation.
type opKey struct {
	protocol string // "grpc" or "binary"
	op       string // GET, PUT, ... (the names STATS uses)
}

// opRecorder keeps one histogram per protocol and operation name.
type opRecorder struct {
	start time.Time
	desc  *prometheus.Desc
	mu    sync.RWMutex
	ops   map[opKey]*opHistogram
	total atomic.Int64
}

var _ prometheus.Collector = (*opRecorder)(nil)

func newOpRecorder() *opRecorder {
	return &opRecorder{
		start: time.Now(),
		ops:   make(map[opKey]*opHistogram),
		desc: prometheus.NewDesc("kvdb_operation_duration_seconds",
			"Time from receiving a client operation to its reply being ready, by protocol (grpc, binary) and operation; the source of STATS metrics.operations.",
			[]string{"protocol", "operation"}, nil),
	}
}

func (r *opRecorder) histogram(k opKey) *opHistogram {
	r.mu.RLock()
	h := r.ops[k]
	r.mu.RUnlock()
	if h != nil {
		return h
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if h = r.ops[k]; h == nil {
		h = &opHistogram{}
		r.ops[k] = h
	}
	return h
}

// Observe implements core.Observer.
func (r *opRecorder) Observe(p core.Protocol, op core.Op, d time.Duration) {
	r.total.Add(1)
	r.histogram(opKey{string(p), op.String()}).observe(d)
}

// Describe implements prometheus.Collector.
func (r *opRecorder) Describe(ch chan<- *prometheus.Desc) { ch <- r.desc }

// Collect implements prometheus.Collector.
func (r *opRecorder) Collect(ch chan<- prometheus.Metric) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for k, h := range r.ops {
		var counts [64 * 4]int64
		for b := range h.buckets {
			counts[b] = h.buckets[b].Load()
		}
		cum := make(map[float64]uint64, len(promBounds))
		var total uint64
		b := 0
		for _, le := range promBounds {
			limitUs := uint64(le * 1e6) // exclusive: values below le
			for ; b < len(counts) && bucketUpper(b) < limitUs; b++ {
				total += uint64(counts[b])
			}
			cum[le] = total
		}
		var count uint64
		for _, c := range counts {
			count += uint64(c)
		}
		sum := time.Duration(h.sumNs.Load()).Seconds()
		m, err := prometheus.NewConstHistogram(r.desc, count, sum, cum, k.protocol, k.op)
		if err != nil {
			continue
		}
		ch <- m
	}
}

type opSnapshot struct {
	Name                string
	Count               int64
	OpsPerSec           float64
	AvgUs, P95Us, P99Us int64
}

// snapshot merges the protocols of each operation for STATS.
func (r *opRecorder) snapshot() (uptime time.Duration, ops []opSnapshot) {
	uptime = time.Since(r.start)
	type merged struct {
		counts [64 * 4]int64
		sumNs  int64
	}
	byName := map[string]*merged{}
	r.mu.RLock()
	for k, h := range r.ops {
		m := byName[k.op]
		if m == nil {
			m = &merged{}
			byName[k.op] = m
		}
		for b := range h.buckets {
			m.counts[b] += h.buckets[b].Load()
		}
		m.sumNs += h.sumNs.Load()
	}
	r.mu.RUnlock()
	for name, m := range byName {
		var c int64
		for _, n := range m.counts {
			c += n
		}
		s := opSnapshot{Name: name, Count: c, P95Us: quantile(&m.counts, c, 0.95), P99Us: quantile(&m.counts, c, 0.99)}
		if c > 0 {
			s.AvgUs = m.sumNs / c / int64(time.Microsecond)
		}
		if secs := uptime.Seconds(); secs > 0 {
			s.OpsPerSec = float64(c) / secs
		}
		ops = append(ops, s)
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].Name < ops[j].Name })
	return uptime, ops
}
