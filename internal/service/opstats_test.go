package service

import (
	"github.com/kvdb/kvdb/internal/core"

	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestOpRecorderViewsAgree: the Prometheus histogram and the STATS
// snapshot read the same counts, and the exported buckets hold exactly the
// observations below their bound.
func TestOpRecorderViewsAgree(t *testing.T) {
	r := newOpRecorder()
	obs := []struct {
		protocol string
		d        time.Duration
	}{
		{"grpc", 0},
		{"grpc", 3 * time.Microsecond},
		{"grpc", 100 * time.Microsecond},
		{"binary", 127 * time.Microsecond},
		{"binary", 128 * time.Microsecond},
		{"binary", 2 * time.Millisecond},
		{"grpc", 20 * time.Second}, // past the last bound: only in +Inf
	}
	for _, o := range obs {
		r.Observe(core.Protocol(o.protocol), core.OpGet, o.d)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(r)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	cum := map[float64]uint64{}
	var count uint64
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			count += h.GetSampleCount()
			for _, b := range h.GetBucket() {
				cum[b.GetUpperBound()] += b.GetCumulativeCount()
			}
		}
	}
	for _, tc := range []struct {
		le   float64
		want uint64
	}{
		{1e-6, 1},     // 0
		{4e-6, 2},     // + 3µs
		{128e-6, 4},   // + 100µs, 127µs; 128µs is not below 128µs
		{256e-6, 5},   // + 128µs
		{2048e-6, 6},  // + 2ms (2000µs < 2048µs)
		{8.388608, 6}, // everything but the 20s one
	} {
		if got := cum[tc.le]; got != tc.want {
			t.Errorf("le=%g: %d, want %d", tc.le, got, tc.want)
		}
	}
	_, ops := r.snapshot()
	if len(ops) != 1 || ops[0].Name != "GET" || uint64(ops[0].Count) != count || count != uint64(len(obs)) {
		t.Fatalf("snapshot %+v, histogram count %d, observed %d", ops, count, len(obs))
	}
	if r.total.Load() != int64(len(obs)) {
		t.Fatalf("total = %d", r.total.Load())
	}
	// p99 of 7 observations is the 20s one.
	if ops[0].P99Us < 20_000_000 || ops[0].P95Us > ops[0].P99Us {
		t.Fatalf("percentiles = %+v", ops[0])
	}
}
