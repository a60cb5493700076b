package bench

import (
	"math"
	"math/bits"
	"time"
)

// Bucket layout: values below 2^mantissaBits nanoseconds have a bucket
// each; above, every power of two is split into 2^mantissaBits buckets of
// equal width, so a bucket's width is under 1/128 of its values.
const (
	mantissaBits = 7
	subBuckets   = 1 << mantissaBits
	numBuckets   = subBuckets + (64-mantissaBits)*subBuckets
)

// Histogram counts latencies in log-linear buckets. The zero value is
// empty and ready to use. It is not safe for concurrent use: each worker
// owns one and they are merged afterwards.
type Histogram struct {
	counts   [numBuckets]uint64
	n        uint64
	sum      uint64
	min, max uint64
}

func bucketOf(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	e := bits.Len64(v) - mantissaBits - 1
	m := v >> uint(e) // in [subBuckets, 2*subBuckets)
	return subBuckets + e*subBuckets + int(m-subBuckets)
}

// bucketUpper is the largest value that falls into bucket i.
func bucketUpper(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	e := (i - subBuckets) / subBuckets
	m := uint64((i-subBuckets)%subBuckets + subBuckets)
	return (m+1)<<uint(e) - 1
}

// Record adds one latency. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += v
}

// Merge adds every sample of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Count is the number of samples.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest sample, exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean is the average sample.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / h.n)
}

// Quantile returns the sample at quantile q (0 < q <= 1): the upper bound of
// the bucket that holds it, clamped to the exact minimum and maximum. It is
// 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := min(max(bucketUpper(i), h.min), h.max)
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}
