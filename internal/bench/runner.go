package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kvdb/kvdb/internal/engine"
)

// Op is the kind of request a run sends.
type Op string

// Workloads.
const (
	OpGet    Op = "get"
	OpPut    Op = "put"
	OpDelete Op = "delete"
	OpMixed  Op = "mixed" // ReadPercent gets, the rest puts
	OpBatch  Op = "batch" // atomic batches of BatchSize puts
	OpTxn    Op = "txn"   // one-shot transactions: read one key, write another
)

// ParseOp reads an --op value.
func ParseOp(s string) (Op, error) {
	switch op := Op(strings.ToLower(strings.TrimSpace(s))); op {
	case OpGet, OpPut, OpDelete, OpMixed, OpBatch, OpTxn:
		return op, nil
	}
	return "", fmt.Errorf("unknown op %q: want get, put, delete, mixed, batch or txn", s)
}

// Bounds of a run with neither or only one of Duration and Total.
const (
	DefaultDuration = 10 * time.Second
	MaxDuration     = 10 * time.Minute
)

// MaxValueSize is the largest ValueSize a run accepts: the largest value any
// KVDB server can store (its -max-value-size, 1 MiB by default, is at most
// this). A larger value could never be written, and the run would hold it
// in memory once per request in flight.
const MaxValueSize = engine.MaxValueSize

// MaxBatchBytes bounds the values of one batch of OpBatch (BatchSize ×
// ValueSize): 64 MiB, the largest message or frame a KVDB client accepts.
const MaxBatchBytes = 64 << 20

// Config is one run's shape. Zero values take the defaults noted.
type Config struct {
	Op          Op
	Clients     int // concurrent workers (default 16)
	Pipeline    int // requests in flight per worker (default 1)
	ValueSize   int // bytes (default 256; negative: empty values; at most MaxValueSize)
	Keys        int // key space (default 10,000)
	KeyPrefix   string
	BatchSize   int // puts per batch for OpBatch (default 100)
	ReadPercent int // gets in OpMixed (default 50)
	// Duration and Total bound the run; the first reached ends it.
	Duration time.Duration
	Total    int64
	// Sequential walks the key space in order (key i for the i-th request,
	// wrapping) instead of picking keys at random.
	Sequential bool
	// NoPreload skips writing the key space before reads and deletes.
	NoPreload bool
	// RetryUnavailable sends a request again, after a short pause, when it
	// fails with UNAVAILABLE (a leader change); such retries are counted in
	// Result.Retried, not as errors.
	RetryUnavailable bool
	// Progress, when set, is called about five times a second with the
	// operations done so far.
	Progress func(p Progress)
	// ServerPID, when positive, is the server process whose CPU time the
	// result reports beside the load generator's (same machine only).
	ServerPID int
	// DrainTimeout bounds how long requests in flight at the end of a
	// --duration run may take to finish (default 5 s).
	DrainTimeout time.Duration
}

// Progress is a snapshot of a running benchmark.
type Progress struct {
	Done, Total       int64
	Elapsed, Duration time.Duration
}

// Fraction is how far the run is, from 0 to 1, by whichever bound is nearer.
func (p Progress) Fraction() float64 {
	var f float64
	if p.Total > 0 {
		f = float64(p.Done) / float64(p.Total)
	}
	if p.Duration > 0 {
		f = max(f, float64(p.Elapsed)/float64(p.Duration))
	}
	return min(f, 1)
}

func (c *Config) setDefaults() {
	if c.Op == "" {
		c.Op = OpPut
	}
	if c.Clients <= 0 {
		c.Clients = 16
	}
	if c.Pipeline <= 0 {
		c.Pipeline = 1
	}
	if c.ValueSize < 0 {
		c.ValueSize = 0
	} else if c.ValueSize == 0 {
		c.ValueSize = 256
	}
	if c.Keys <= 0 {
		c.Keys = 10_000
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 100
	}
	if c.ReadPercent <= 0 || c.ReadPercent > 100 {
		c.ReadPercent = 50
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 5 * time.Second
	}
	switch {
	case c.Duration <= 0 && c.Total <= 0:
		c.Duration = DefaultDuration
	case c.Duration <= 0:
		c.Duration = MaxDuration
	}
}

// Validate reports a Config no run can use. Run calls it before it
// allocates anything; front ends call it to refuse bad flags early.
func (c *Config) Validate() error {
	d := *c // with the defaults a run would use
	d.setDefaults()
	if d.ValueSize > MaxValueSize {
		return fmt.Errorf("value size %d is over %d bytes (64 MiB), the largest value a KVDB server can store", d.ValueSize, MaxValueSize)
	}
	if d.Op == OpBatch && int64(d.BatchSize)*int64(d.ValueSize) > MaxBatchBytes {
		return fmt.Errorf("a batch of %d values of %d bytes is over %d bytes (64 MiB), the largest request a run sends", d.BatchSize, d.ValueSize, MaxBatchBytes)
	}
	return nil
}

// Key is the i-th key of the key space.
func (c *Config) Key(i int) []byte { return fmt.Appendf(nil, "%s%08d", c.KeyPrefix, i) }

// Run preloads the key space when the workload reads or deletes, then runs
// the workload against d until a bound is reached or ctx ends.
func Run(ctx context.Context, d Driver, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	cfg.setDefaults()
	value := make([]byte, cfg.ValueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	if !cfg.NoPreload && (cfg.Op == OpGet || cfg.Op == OpMixed || cfg.Op == OpDelete || cfg.Op == OpTxn) {
		if err := Preload(ctx, d, &cfg, value); err != nil {
			return nil, fmt.Errorf("bench: preload: %w", err)
		}
	}
	// The run stops issuing requests at its deadline, but requests already
	// in flight finish under their own timeout (the client's per-request
	// one, and DrainTimeout past the deadline for pipelined waits): cutting
	// them off would count the server's answers to an expired deadline as
	// errors, and drop work the server did.
	waitCtx, cancel := context.WithTimeout(ctx, cfg.Duration+cfg.DrainTimeout)
	defer cancel()

	r := &runner{cfg: &cfg, d: d, value: value, waitCtx: waitCtx}
	if cfg.Keys <= maxKeyTable {
		r.keys = make([][]byte, cfg.Keys)
		for i := range r.keys {
			r.keys[i] = cfg.Key(i)
		}
	}
	if p, ok := d.(Pipeliner); ok && cfg.Pipeline > 1 {
		r.pipe = p
	}
	workers := cfg.Clients
	if r.pipe == nil {
		workers *= cfg.Pipeline
	}
	r.workers = make([]*worker, workers)
	for i := range r.workers {
		r.workers[i] = &worker{r: r, rnd: rand.New(rand.NewPCG(uint64(i)+1, 0x6b766462)), errs: map[codes.Code]int64{}}
	}

	cpu0, cpuErr := ProcessCPU(0)
	var srv0 time.Duration
	srvErr := errors.New("no server process")
	if cfg.ServerPID > 0 {
		srv0, srvErr = ProcessCPU(cfg.ServerPID)
	}
	start := time.Now()
	r.deadline = start.Add(cfg.Duration)
	var wg sync.WaitGroup
	for _, w := range r.workers {
		wg.Go(func() { w.loop(ctx) })
	}
	stopProgress := make(chan struct{})
	var progressDone sync.WaitGroup
	if cfg.Progress != nil {
		progressDone.Go(func() {
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					cfg.Progress(Progress{Done: r.done.Load(), Total: cfg.Total, Elapsed: time.Since(start), Duration: cfg.Duration})
				case <-stopProgress:
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stopProgress)
	progressDone.Wait()
	if cfg.Progress != nil {
		cfg.Progress(Progress{Done: r.done.Load(), Total: cfg.Total, Elapsed: elapsed, Duration: cfg.Duration})
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res := r.result(elapsed)
	if cpu1, err := ProcessCPU(0); err == nil && cpuErr == nil {
		res.setCPU(&res.ClientCPUSeconds, &res.ClientCPUPerRequestUs, cpu1-cpu0)
	}
	if srvErr == nil {
		if srv1, err := ProcessCPU(cfg.ServerPID); err == nil {
			res.ServerPID = cfg.ServerPID
			res.setCPU(&res.ServerCPUSeconds, &res.ServerCPUPerRequestUs, srv1-srv0)
		}
	}
	return res, nil
}

// Bounds of one preload batch: at most preloadOps keys (under etcd's
// default limit of 128 operations per txn) and, past its first key, at
// most preloadBytes of keys and values (well under a node's default
// -max-request-size of 4 MiB).
const (
	preloadOps   = 100
	preloadBytes = 1 << 20
)

// Preload writes every key of the key space in batches.
func Preload(ctx context.Context, d Driver, cfg *Config, value []byte) error {
	var kvs []KV
	size := 0
	for i := 0; i < cfg.Keys; i++ {
		kv := KV{Key: cfg.Key(i), Value: value}
		if len(kvs) > 0 && size+len(kv.Key)+len(kv.Value) > preloadBytes {
			if err := d.Batch(ctx, kvs); err != nil {
				return err
			}
			kvs, size = kvs[:0], 0
		}
		kvs = append(kvs, kv)
		size += len(kv.Key) + len(kv.Value)
		if len(kvs) == preloadOps || i == cfg.Keys-1 {
			if err := d.Batch(ctx, kvs); err != nil {
				return err
			}
			kvs, size = kvs[:0], 0
		}
	}
	return nil
}

type runner struct {
	cfg   *Config
	d     Driver
	pipe  Pipeliner
	value []byte
	// keys is the key space formatted once (nil when it is too large to
	// keep: keys are then formatted per request).
	keys    [][]byte
	workers []*worker
	waitCtx context.Context // bounds pipelined waits: the run's end plus DrainTimeout
	// deadline is when the run stops issuing requests.
	deadline time.Time
	issued   atomic.Int64 // operations started, bounded by cfg.Total
	done     atomic.Int64 // operations finished, successful or not
	seq      atomic.Int64 // next key of a Sequential run
}

// claim reserves the next operation; false once Total are out or the
// run's time is up.
func (r *runner) claim() bool { return r.claimAt(time.Now()) }

// claimAt is claim at now, for a caller that also needs the time.
func (r *runner) claimAt(now time.Time) bool {
	if !now.Before(r.deadline) {
		return false
	}
	if r.cfg.Total <= 0 {
		return true
	}
	return r.issued.Add(1) <= r.cfg.Total
}

type worker struct {
	r       *runner
	rnd     *rand.Rand
	hist    Histogram
	ok      int64
	retried int64
	errs    map[codes.Code]int64
	// pause is how long the worker waits after a request failed with
	// UNAVAILABLE before it sends the next one (0 after a success).
	pause time.Duration
}

// Pauses after a request failed with UNAVAILABLE (the node went away, is
// stopping, or has no leader): the first, doubled per failure in a row up
// to the most. A failing node is not hammered, and a leader elected
// meanwhile is found within the longest pause.
const (
	firstPause = 10 * time.Millisecond
	maxPause   = 250 * time.Millisecond
)

// backOff waits after a request ended with err: the next pause after an
// UNAVAILABLE, none otherwise. It ends at the run's deadline or ctx's end.
func (w *worker) backOff(ctx context.Context, err error) {
	if Code(err) != codes.Unavailable {
		w.pause = 0
		return
	}
	w.pause = min(max(2*w.pause, firstPause), maxPause)
	if d := min(w.pause, time.Until(w.r.deadline)); d > 0 {
		sleep(ctx, d)
	}
}

// sleep waits for d or until ctx ends (a variable: tests record the
// pauses).
var sleep = func(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func (w *worker) key() []byte {
	var i int
	if w.r.cfg.Sequential {
		i = int((w.r.seq.Add(1) - 1) % int64(w.r.cfg.Keys))
	} else {
		i = w.rnd.IntN(w.r.cfg.Keys)
	}
	if w.r.keys != nil {
		return w.r.keys[i]
	}
	return w.r.cfg.Key(i)
}

// maxKeyTable is the largest key space whose keys Run formats up front.
const maxKeyTable = 1 << 20

// next picks the operation of the next request.
func (w *worker) next() Op {
	if w.r.cfg.Op != OpMixed {
		return w.r.cfg.Op
	}
	if w.rnd.IntN(100) < w.r.cfg.ReadPercent {
		return OpGet
	}
	return OpPut
}

func (w *worker) loop(ctx context.Context) {
	if w.r.pipe != nil {
		w.pipelined(ctx)
		return
	}
	for ctx.Err() == nil && w.r.claim() {
		start := time.Now()
		err := w.do(ctx, w.next())
		w.finish(ctx, start, err)
		w.backOff(ctx, err)
	}
}

// pipelined keeps up to Pipeline gets, puts and deletes in flight on the driver's
// pipelined path, then waits for them in order. Latency is measured from a
// request's send to the return of its wait, so it includes queueing behind
// earlier replies of the same window.
func (w *worker) pipelined(ctx context.Context) {
	p := w.r.pipe.Pipeline()
	waits := make([]Waiter, 0, w.r.cfg.Pipeline)
	errs := make([]error, 0, w.r.cfg.Pipeline)
	starts := make([]time.Time, 0, w.r.cfg.Pipeline)
	ops := make([]Op, 0, w.r.cfg.Pipeline)
	for ctx.Err() == nil {
		waits, errs, starts, ops = waits[:0], errs[:0], starts[:0], ops[:0]
		for len(waits) < w.r.cfg.Pipeline {
			now := time.Now()
			if !w.r.claimAt(now) {
				break
			}
			starts = append(starts, now)
			op := w.next()
			ops = append(ops, op)
			var wt Waiter
			var err error
			switch op {
			case OpGet:
				wt = p.GetAsync(ctx, w.key())
			case OpPut:
				wt = p.PutAsync(ctx, w.key(), w.r.value)
			case OpDelete:
				wt = p.DeleteAsync(ctx, w.key())
			default:
				p.Flush() // what is queued goes first
				err = w.do(ctx, op)
			}
			waits, errs = append(waits, wt), append(errs, err)
		}
		p.Flush()
		if len(waits) == 0 {
			return
		}
		var unavailable error // the window's last UNAVAILABLE, if any
		for i, wait := range waits {
			err := errs[i]
			if wait != nil {
				err = wait.Wait(w.r.waitCtx)
			}
			if err != nil && w.r.cfg.RetryUnavailable && Code(err) == codes.Unavailable && ctx.Err() == nil {
				// Pipelined requests are not retried in flight; send this
				// one again on its own, as a synchronous request would be.
				w.retried++
				err = w.do(ctx, ops[i])
			}
			w.finish(ctx, starts[i], err)
			if Code(err) == codes.Unavailable {
				unavailable = err
			}
		}
		w.backOff(ctx, unavailable)
	}
}

// do sends one request, retrying UNAVAILABLE when configured to.
func (w *worker) do(ctx context.Context, op Op) error {
	for {
		err := w.once(ctx, op)
		if err == nil || !w.r.cfg.RetryUnavailable || Code(err) != codes.Unavailable || ctx.Err() != nil {
			return err
		}
		w.retried++
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return err
		}
	}
}

func (w *worker) once(ctx context.Context, op Op) error {
	d := w.r.d
	switch op {
	case OpGet:
		return d.Get(ctx, w.key())
	case OpPut:
		return d.Put(ctx, w.key(), w.r.value)
	case OpDelete:
		return d.Delete(ctx, w.key())
	case OpBatch:
		kvs := make([]KV, w.r.cfg.BatchSize)
		for i := range kvs {
			kvs[i] = KV{Key: w.key(), Value: w.r.value}
		}
		return d.Batch(ctx, kvs)
	case OpTxn:
		return d.Txn(ctx, w.key(), w.key(), w.r.value)
	}
	return fmt.Errorf("bench: unknown op %q", op)
}

// finish records one completed request. A request that failed once the
// run was cancelled (ctx, the caller's) was cut off: neither a success nor
// an error. Requests in flight at the run's deadline are not cut off: they
// count as they end.
func (w *worker) finish(ctx context.Context, start time.Time, err error) {
	w.r.done.Add(1)
	if err != nil && ctx.Err() != nil {
		return
	}
	if err != nil {
		w.errs[Code(err)]++
		return
	}
	w.ok++
	w.hist.Record(time.Since(start))
}
