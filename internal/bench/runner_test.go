package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeDriver answers every call at once; failEvery > 0 fails every n-th
// call with code, and unavailableFirst fails the first n calls with
// UNAVAILABLE.
type fakeDriver struct {
	calls, batches   atomic.Int64
	failEvery        int64
	code             codes.Code
	unavailableFirst int64
}

func (f *fakeDriver) call() error {
	n := f.calls.Add(1)
	if n <= f.unavailableFirst {
		return status.Error(codes.Unavailable, "leader changed")
	}
	if f.failEvery > 0 && n%f.failEvery == 0 {
		return status.Error(f.code, "no")
	}
	return nil
}

func (f *fakeDriver) Get(context.Context, []byte) error         { return f.call() }
func (f *fakeDriver) Put(context.Context, []byte, []byte) error { return f.call() }
func (f *fakeDriver) Delete(context.Context, []byte) error      { return f.call() }
func (f *fakeDriver) Batch(context.Context, []KV) error         { f.batches.Add(1); return nil }
func (f *fakeDriver) Txn(context.Context, []byte, []byte, []byte) error {
	return f.call()
}
func (f *fakeDriver) Close() error { return nil }

func TestRunCounts(t *testing.T) {
	tests := []struct {
		name        string
		cfg         Config
		d           *fakeDriver
		wantOps     int64
		wantErrs    map[string]int64
		wantRetried int64
		wantPreload int64
	}{
		{name: "put total", cfg: Config{Op: OpPut, Total: 1000, Clients: 4}, d: &fakeDriver{}, wantOps: 1000, wantErrs: map[string]int64{}},
		{name: "get preloads", cfg: Config{Op: OpGet, Total: 100, Keys: 250}, d: &fakeDriver{}, wantOps: 100, wantErrs: map[string]int64{}, wantPreload: 3},
		{name: "no preload", cfg: Config{Op: OpGet, Total: 100, Keys: 250, NoPreload: true}, d: &fakeDriver{}, wantOps: 100, wantErrs: map[string]int64{}},
		{name: "errors by code", cfg: Config{Op: OpPut, Total: 1000, Clients: 1}, d: &fakeDriver{failEvery: 10, code: codes.ResourceExhausted},
			wantOps: 900, wantErrs: map[string]int64{"RESOURCE_EXHAUSTED": 100}},
		{name: "unavailable counted", cfg: Config{Op: OpDelete, Total: 100, Clients: 1, NoPreload: true}, d: &fakeDriver{unavailableFirst: 5},
			wantOps: 95, wantErrs: map[string]int64{"UNAVAILABLE": 5}},
		{name: "unavailable retried", cfg: Config{Op: OpPut, Total: 100, Clients: 1, RetryUnavailable: true}, d: &fakeDriver{unavailableFirst: 5},
			wantOps: 100, wantErrs: map[string]int64{}, wantRetried: 5},
		{name: "pipelined unavailable retried", cfg: Config{Op: OpPut, Total: 100, Clients: 1, Pipeline: 4, RetryUnavailable: true}, d: &fakeDriver{unavailableFirst: 5},
			wantOps: 100, wantErrs: map[string]int64{}, wantRetried: 5},
		{name: "batch counts keys", cfg: Config{Op: OpBatch, Total: 10, BatchSize: 50}, d: &fakeDriver{}, wantOps: 500, wantErrs: map[string]int64{}, wantPreload: 10},
		{name: "mixed", cfg: Config{Op: OpMixed, Total: 400, Keys: 10, Pipeline: 4}, d: &fakeDriver{}, wantOps: 400, wantErrs: map[string]int64{}, wantPreload: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Run(context.Background(), tt.d, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Ops != tt.wantOps {
				t.Errorf("ops = %d, want %d", res.Ops, tt.wantOps)
			}
			var total int64
			for c, n := range tt.wantErrs {
				total += n
				if res.ErrorsByCode[c] != n {
					t.Errorf("errors_by_code[%s] = %d, want %d (all: %v)", c, res.ErrorsByCode[c], n, res.ErrorsByCode)
				}
			}
			if res.Errors != total || len(res.ErrorsByCode) != len(tt.wantErrs) {
				t.Errorf("errors = %d %v, want %d %v", res.Errors, res.ErrorsByCode, total, tt.wantErrs)
			}
			if res.Retried != tt.wantRetried {
				t.Errorf("retried = %d, want %d", res.Retried, tt.wantRetried)
			}
			if got := tt.d.batches.Load(); tt.cfg.Op != OpBatch && got != tt.wantPreload {
				t.Errorf("preload batches = %d, want %d", got, tt.wantPreload)
			}
			if res.Ops > 0 && (res.OpsPerSec <= 0 || res.P50Us > res.P99Us || res.P99Us > res.MaxUs) {
				t.Errorf("implausible figures: %+v", res)
			}
		})
	}
}

func TestRunStopsAtDuration(t *testing.T) {
	start := time.Now()
	res, err := Run(context.Background(), &fakeDriver{}, Config{Op: OpPut, Duration: 100 * time.Millisecond, Clients: 2})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("a 100ms run took %v", el)
	}
	if res.Ops == 0 || res.Errors != 0 {
		t.Fatalf("ops=%d errors=%d", res.Ops, res.Errors)
	}
}

func TestResultJSONShape(t *testing.T) {
	res, err := Run(context.Background(), &fakeDriver{failEvery: 2, code: codes.Unavailable}, Config{Op: OpPut, Total: 10, Clients: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ops_per_sec", "p50_us", "p95_us", "p99_us", "max_us", "errors", "errors_by_code", "ops", "elapsed_s"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
	if m["errors"] != 5.0 || m["errors_by_code"].(map[string]any)["UNAVAILABLE"] != 5.0 {
		t.Errorf("errors in JSON: %s", b)
	}
}

func TestCodeName(t *testing.T) {
	for c, want := range map[codes.Code]string{
		codes.OK: "OK", codes.ResourceExhausted: "RESOURCE_EXHAUSTED", codes.Unavailable: "UNAVAILABLE",
		codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.FailedPrecondition: "FAILED_PRECONDITION",
	} {
		if got := CodeName(c); got != want {
			t.Errorf("CodeName(%v) = %q, want %q", c, got, want)
		}
	}
}

func TestWriteTextAndProgressBar(t *testing.T) {
	r := &Result{Op: OpPut, Ops: 10, ElapsedSeconds: 1, OpsPerSec: 10, Errors: 2, ErrorsByCode: map[string]int64{"UNAVAILABLE": 2}}
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"PUT: 10 ops", "p50=", "errors: 2", "UNAVAILABLE: 2"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
	bar := ProgressBar(Progress{Done: 50, Total: 100, Elapsed: time.Second}, 10)
	if !strings.HasPrefix(bar, "[#####.....]  50%") {
		t.Errorf("bar = %q", bar)
	}
}

func TestParseOp(t *testing.T) {
	for _, s := range []string{"get", "PUT", " mixed ", "batch", "txn", "delete"} {
		if _, err := ParseOp(s); err != nil {
			t.Errorf("ParseOp(%q): %v", s, err)
		}
	}
	if _, err := ParseOp("scan"); err == nil {
		t.Error("ParseOp(scan) accepted")
	}
}

// TestConfigValidate: a value size no server can store, or a batch too
// large to send, is refused before anything is allocated or sent.
func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "default", cfg: Config{}},
		{name: "empty values", cfg: Config{ValueSize: -1}},
		{name: "largest value", cfg: Config{Op: OpPut, ValueSize: MaxValueSize}},
		{name: "value too large", cfg: Config{Op: OpPut, ValueSize: MaxValueSize + 1}, wantErr: "the largest value a KVDB server can store"},
		{name: "value too large for get", cfg: Config{Op: OpGet, ValueSize: 99999999999}, wantErr: "value size 99999999999 is over 67108864 bytes"},
		{name: "batch at the bound", cfg: Config{Op: OpBatch, BatchSize: 64, ValueSize: 1 << 20}},
		{name: "batch too large", cfg: Config{Op: OpBatch, BatchSize: 65, ValueSize: 1 << 20}, wantErr: "a batch of 65 values"},
		{name: "default batch too large", cfg: Config{Op: OpBatch, ValueSize: 1 << 20}, wantErr: "a batch of 100 values"},
		{name: "large values, not a batch", cfg: Config{Op: OpPut, BatchSize: 1000, ValueSize: 1 << 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.wantErr)
			}
			if tt.cfg.ValueSize > MaxValueSize+1 {
				return // not given to Run: it would allocate the value if it did not check
			}
			// Run refuses it too, before it sends anything.
			d := &fakeDriver{}
			cfg := tt.cfg
			cfg.Total = 1
			if _, err := Run(context.Background(), d, cfg); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Run = %v, want an error containing %q", err, tt.wantErr)
			}
			if n := d.calls.Load() + d.batches.Load(); n != 0 {
				t.Errorf("Run sent %d requests", n)
			}
		})
	}
}

// TestUnavailableBacksOff: after a request fails with UNAVAILABLE a worker
// pauses before its next one, doubling the pause per failure in a row up to
// maxPause and starting over after a success; other errors do not pause.
func TestUnavailableBacksOff(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name string
		cfg  Config
		d    *fakeDriver
		want []time.Duration
	}{
		{name: "unavailable", cfg: Config{Op: OpPut, Total: 20, Clients: 1}, d: &fakeDriver{unavailableFirst: 8},
			want: []time.Duration{10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 250 * ms, 250 * ms, 250 * ms}},
		{name: "starts over after a success", cfg: Config{Op: OpPut, Total: 6, Clients: 1}, d: &fakeDriver{failEvery: 2, code: codes.Unavailable},
			want: []time.Duration{10 * ms, 10 * ms, 10 * ms}},
		{name: "other errors", cfg: Config{Op: OpPut, Total: 20, Clients: 1}, d: &fakeDriver{failEvery: 2, code: codes.ResourceExhausted}},
		{name: "retried", cfg: Config{Op: OpPut, Total: 20, Clients: 1, RetryUnavailable: true}, d: &fakeDriver{unavailableFirst: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var got []time.Duration
			orig := sleep
			sleep = func(_ context.Context, d time.Duration) {
				mu.Lock()
				got = append(got, d)
				mu.Unlock()
			}
			t.Cleanup(func() { sleep = orig })
			tt.cfg.Duration = MaxDuration // so no pause is cut short by the deadline
			if _, err := Run(context.Background(), tt.d, tt.cfg); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("pauses %v, want %v", got, tt.want)
			}
		})
	}
}

// batchSizes records the key-values and bytes of every batch.
type batchSizes struct {
	fakeDriver
	mu    sync.Mutex
	kvs   []int
	bytes []int
}

func (b *batchSizes) Batch(_ context.Context, kvs []KV) error {
	n := 0
	for _, kv := range kvs {
		n += len(kv.Key) + len(kv.Value)
	}
	b.mu.Lock()
	b.kvs, b.bytes = append(b.kvs, len(kvs)), append(b.bytes, n)
	b.mu.Unlock()
	return nil
}

// TestPreloadBatchesBounded: the preload's batches hold at most 100 keys
// and, past their first key, at most 1 MiB, so large values fit a node's
// default request limit.
func TestPreloadBatchesBounded(t *testing.T) {
	tests := []struct {
		name      string
		keys      int
		valueSize int
		wantKVs   []int
	}{
		{name: "small values", keys: 250, valueSize: 16, wantKVs: []int{100, 100, 50}},
		{name: "100 KiB values", keys: 25, valueSize: 100 << 10, wantKVs: []int{10, 10, 5}},
		{name: "1 MiB values", keys: 3, valueSize: 1 << 20, wantKVs: []int{1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &batchSizes{}
			cfg := Config{Keys: tt.keys, KeyPrefix: "p/"}
			if err := Preload(context.Background(), d, &cfg, make([]byte, tt.valueSize)); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(d.kvs) != fmt.Sprint(tt.wantKVs) {
				t.Errorf("batches of %v keys, want %v", d.kvs, tt.wantKVs)
			}
			for i, n := range d.bytes {
				if d.kvs[i] > 1 && n > preloadBytes {
					t.Errorf("batch %d: %d keys, %d bytes", i, d.kvs[i], n)
				}
			}
		})
	}
}
