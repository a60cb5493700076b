package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// Result is what a run measured. Its JSON form is the output of
// `kvdbctl bench --json`; the field names are a stable interface.
type Result struct {
	Op        Op  `json:"op"`
	Clients   int `json:"clients"`
	Pipeline  int `json:"pipeline"`
	ValueSize int `json:"value_size"`
	Keys      int `json:"keys"`
	BatchSize int `json:"batch_size,omitempty"`
	// Ops counts successful requests; a batch is BatchSize operations.
	Ops            int64   `json:"ops"`
	Requests       int64   `json:"requests"`
	ElapsedSeconds float64 `json:"elapsed_s"`
	OpsPerSec      float64 `json:"ops_per_sec"`
	RequestsPerSec float64 `json:"requests_per_sec"`
	// Latencies are per request, in microseconds.
	MeanUs float64 `json:"mean_us"`
	P50Us  float64 `json:"p50_us"`
	P95Us  float64 `json:"p95_us"`
	P99Us  float64 `json:"p99_us"`
	MaxUs  float64 `json:"max_us"`
	// Errors is the number of failed requests, ErrorsByCode the same split
	// by gRPC status code name (RESOURCE_EXHAUSTED, UNAVAILABLE, ...).
	Errors       int64            `json:"errors"`
	ErrorsByCode map[string]int64 `json:"errors_by_code"`
	// Retried counts UNAVAILABLE answers that were sent again
	// (Config.RetryUnavailable).
	Retried int64 `json:"retried_unavailable"`
	// CPU time the load generator (this process) and the server used
	// during the run, in all and per successful request, so a reader sees
	// which side saturated; the server's only when its process is known
	// (Config.ServerPID) and on this machine.
	ClientCPUSeconds      float64 `json:"client_cpu_s,omitempty"`
	ClientCPUPerRequestUs float64 `json:"client_cpu_us_per_request,omitempty"`
	ServerPID             int     `json:"server_pid,omitempty"`
	ServerCPUSeconds      float64 `json:"server_cpu_s,omitempty"`
	ServerCPUPerRequestUs float64 `json:"server_cpu_us_per_request,omitempty"`
}

func (r *Result) setCPU(total, perReq *float64, d time.Duration) {
	*total = d.Seconds()
	if r.Requests > 0 {
		*perReq = float64(d/time.Nanosecond) / 1e3 / float64(r.Requests)
	}
}

func (r *runner) result(elapsed time.Duration) *Result {
	var h Histogram
	res := &Result{
		Op: r.cfg.Op, Clients: r.cfg.Clients, Pipeline: r.cfg.Pipeline,
		ValueSize: r.cfg.ValueSize, Keys: r.cfg.Keys, ErrorsByCode: map[string]int64{},
	}
	errs := map[codes.Code]int64{}
	for _, w := range r.workers {
		h.Merge(&w.hist)
		res.Requests += w.ok
		res.Retried += w.retried
		for c, n := range w.errs {
			errs[c] += n
		}
	}
	res.Ops = res.Requests
	if r.cfg.Op == OpBatch {
		res.BatchSize = r.cfg.BatchSize
		res.Ops *= int64(r.cfg.BatchSize)
	}
	for c, n := range errs {
		res.ErrorsByCode[CodeName(c)] += n
		res.Errors += n
	}
	res.ElapsedSeconds = elapsed.Seconds()
	if s := elapsed.Seconds(); s > 0 {
		res.OpsPerSec = float64(res.Ops) / s
		res.RequestsPerSec = float64(res.Requests) / s
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	res.MeanUs, res.MaxUs = us(h.Mean()), us(h.Max())
	res.P50Us, res.P95Us, res.P99Us = us(h.Quantile(0.50)), us(h.Quantile(0.95)), us(h.Quantile(0.99))
	return res
}

// CodeName spells a gRPC code the way the protocol documents do:
// RESOURCE_EXHAUSTED rather than ResourceExhausted.
func CodeName(c codes.Code) string {
	s := c.String()
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' && s[i-1] >= 'a' && s[i-1] <= 'z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// WriteText prints r for a person: one line of throughput, one of latency,
// one per error code.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d ops in %.2fs = %.0f ops/s", strings.ToUpper(string(r.Op)), r.Ops, r.ElapsedSeconds, r.OpsPerSec)
	if r.Op == OpBatch {
		fmt.Fprintf(&b, " (%.0f batches/s of %d)", r.RequestsPerSec, r.BatchSize)
	}
	fmt.Fprintf(&b, " [clients=%d pipeline=%d value=%dB keys=%d]\n", r.Clients, r.Pipeline, r.ValueSize, r.Keys)
	fmt.Fprintf(&b, "latency us: p50=%.0f p95=%.0f p99=%.0f max=%.0f mean=%.0f\n", r.P50Us, r.P95Us, r.P99Us, r.MaxUs, r.MeanUs)
	if r.ClientCPUSeconds > 0 || r.ServerPID > 0 {
		fmt.Fprintf(&b, "cpu: load generator %.2fs (%.1f us/request, %.0f%% of a core)", r.ClientCPUSeconds, r.ClientCPUPerRequestUs, 100*r.ClientCPUSeconds/r.ElapsedSeconds)
		if r.ServerPID > 0 {
			fmt.Fprintf(&b, ", server pid %d %.2fs (%.1f us/request, %.0f%% of a core)", r.ServerPID, r.ServerCPUSeconds, r.ServerCPUPerRequestUs, 100*r.ServerCPUSeconds/r.ElapsedSeconds)
		}
		b.WriteString("\n")
	}
	if r.Retried > 0 {
		fmt.Fprintf(&b, "retried UNAVAILABLE: %d\n", r.Retried)
	}
	fmt.Fprintf(&b, "errors: %d\n", r.Errors)
	for _, c := range slices.Sorted(maps.Keys(r.ErrorsByCode)) {
		fmt.Fprintf(&b, "  %s: %d\n", c, r.ErrorsByCode[c])
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ProgressBar renders p as a one-line bar for a terminal (no newline; the
// caller prefixes "\r").
func ProgressBar(p Progress, width int) string {
	f := p.Fraction()
	n := int(f * float64(width))
	rate := 0.0
	if s := p.Elapsed.Seconds(); s > 0 {
		rate = float64(p.Done) / s
	}
	return fmt.Sprintf("[%s%s] %3.0f%% %d ops %.0f ops/s", strings.Repeat("#", n), strings.Repeat(".", width-n), f*100, p.Done, rate)
}
