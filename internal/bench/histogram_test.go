package bench

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestBucketRoundTrip(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 129, 255, 256, 1000, 123456, 1 << 40, 1<<63 + 12345} {
		i := bucketOf(v)
		if up := bucketUpper(i); up < v {
			t.Errorf("bucketUpper(bucketOf(%d)) = %d, below the value", v, up)
		}
		if i > 0 && bucketUpper(i-1) >= v {
			t.Errorf("value %d also fits the bucket before %d", v, i)
		}
		if i >= numBuckets {
			t.Errorf("bucketOf(%d) = %d, out of %d buckets", v, i, numBuckets)
		}
	}
}

func TestQuantiles(t *testing.T) {
	uniform := func() *Histogram {
		var h Histogram
		for i := 1; i <= 10_000; i++ {
			h.Record(time.Duration(i) * time.Microsecond)
		}
		return &h
	}
	var single Histogram
	single.Record(42 * time.Microsecond)
	tests := []struct {
		name string
		h    *Histogram
		q    float64
		want time.Duration
	}{
		{"empty", &Histogram{}, 0.5, 0},
		{"single p50", &single, 0.5, 42 * time.Microsecond},
		{"single p99", &single, 0.99, 42 * time.Microsecond},
		{"uniform p50", uniform(), 0.50, 5000 * time.Microsecond},
		{"uniform p95", uniform(), 0.95, 9500 * time.Microsecond},
		{"uniform p99", uniform(), 0.99, 9900 * time.Microsecond},
		{"uniform max", uniform(), 1, 10_000 * time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.h.Quantile(tt.q)
			// Buckets are under 1/128 wide: allow 1% above the exact value.
			if got < tt.want || float64(got) > float64(tt.want)*1.01 {
				t.Fatalf("Quantile(%v) = %v, want %v (+1%%)", tt.q, got, tt.want)
			}
		})
	}
}

func TestMergeEqualsRecordingTogether(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var a, b, all Histogram
	for i := range 5000 {
		d := time.Duration(r.ExpFloat64() * float64(200*time.Microsecond))
		all.Record(d)
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(&b)
	for _, q := range []float64{0.5, 0.95, 0.99, 1} {
		if a.Quantile(q) != all.Quantile(q) {
			t.Errorf("q=%v: merged %v, together %v", q, a.Quantile(q), all.Quantile(q))
		}
	}
	if a.Count() != all.Count() || a.Max() != all.Max() || a.Mean() != all.Mean() {
		t.Errorf("merged count/max/mean %d/%v/%v, together %d/%v/%v", a.Count(), a.Max(), a.Mean(), all.Count(), all.Max(), all.Mean())
	}
}
