package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	kvclient "github.com/kvdb/kvdb/client"
	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// Watch workloads.
const (
	// WatchKeys gives every watcher a key of its own; the writes spread
	// over those keys.
	WatchKeys = "keys"
	// WatchPrefix puts every watcher on one prefix the writes go to: each
	// write is delivered to every watcher.
	WatchPrefix = "prefix"
	// WatchIdle puts the watchers on keys nobody writes; the writes go
	// elsewhere, as fast as they can (the write path's cost of watchers).
	WatchIdle = "idle"
)

// WatchConfig is one watch benchmark run.
type WatchConfig struct {
	Endpoints []string
	Security  Security
	Mode      string // WatchKeys, WatchPrefix or WatchIdle
	Watchers  int    // watchers opened (0: none, the baseline)
	// WatchersPerStream watchers share one gRPC stream (default 1).
	WatchersPerStream int
	// Connections spreads the streams over this many gRPC connections
	// (default 16).
	Connections int
	// SlowWatchers are watchers on the written keys whose streams are
	// never read.
	SlowWatchers int
	// Rate is the writes per second (0: as fast as Writers can).
	Rate      int
	Writers   int // concurrent writers (default 16)
	ValueSize int // bytes, at least 8 (default 100)
	Duration  time.Duration
	KeyPrefix string // default "wb/"
	// ServerPID, when positive, is the node's process: its resident
	// memory is read before and after the watchers are opened.
	ServerPID int
}

// WatchResult is what a watch benchmark measured.
type WatchResult struct {
	Mode              string  `json:"mode"`
	Watchers          int     `json:"watchers"`
	SlowWatchers      int     `json:"slow_watchers"`
	Streams           int     `json:"streams"`
	Seconds           float64 `json:"seconds"`
	Writes            int64   `json:"writes"`
	WriteErrors       int64   `json:"write_errors"`
	WritesPerSec      float64 `json:"writes_per_sec"`
	WriteP50us        float64 `json:"write_p50_us"`
	WriteP99us        float64 `json:"write_p99_us"`
	Events            int64   `json:"events"`
	EventsPerSec      float64 `json:"events_per_sec"`
	ExpectedEvents    int64   `json:"expected_events"`
	AckToEventP50us   float64 `json:"ack_to_event_p50_us"`
	AckToEventP99us   float64 `json:"ack_to_event_p99_us"`
	AckToEventMaxus   float64 `json:"ack_to_event_max_us"`
	SendToEventP50us  float64 `json:"send_to_event_p50_us"`
	SendToEventP99us  float64 `json:"send_to_event_p99_us"`
	ServerRSSBefore   int64   `json:"server_rss_before_bytes,omitempty"`
	ServerRSSWatching int64   `json:"server_rss_watching_bytes,omitempty"`
	RSSPerWatcher     float64 `json:"server_rss_per_watcher_bytes,omitempty"`
	// ServerCPUPerWriteus is the node's CPU time (user + system) during
	// the writes divided by the writes: what a write and its deliveries
	// cost, less sensitive to other load on the machine than throughput.
	ServerCPUPerWriteus float64 `json:"server_cpu_per_write_us,omitempty"`
}

// WriteText prints r for people.
func (r *WatchResult) WriteText(w io.Writer) error {
	_, err := fmt.Fprintf(w, `mode %s, %d watchers (%d never read) on %d streams, %.1f s
writes:  %d (%.0f/s), %d errors, latency p50 %.0f µs, p99 %.0f µs
events:  %d delivered of %d expected (%.0f/s)
delivery, write acknowledged → event received: p50 %.0f µs, p99 %.0f µs, max %.0f µs
delivery, write sent → event received:         p50 %.0f µs, p99 %.0f µs
`, r.Mode, r.Watchers, r.SlowWatchers, r.Streams, r.Seconds, r.Writes, r.WritesPerSec, r.WriteErrors, r.WriteP50us, r.WriteP99us,
		r.Events, r.ExpectedEvents, r.EventsPerSec, r.AckToEventP50us, r.AckToEventP99us, r.AckToEventMaxus, r.SendToEventP50us, r.SendToEventP99us)
	if err == nil && r.ServerCPUPerWriteus > 0 {
		_, err = fmt.Fprintf(w, "server CPU per write (its deliveries included): %.1f µs\n", r.ServerCPUPerWriteus)
	}
	if err == nil && r.ServerRSSBefore > 0 {
		_, err = fmt.Fprintf(w, "server RSS: %d MiB before the watchers, %d MiB with them: %.0f bytes per watcher\n",
			r.ServerRSSBefore>>20, r.ServerRSSWatching>>20, r.RSSPerWatcher)
	}
	return err
}

func (c *WatchConfig) setDefaults() {
	if c.WatchersPerStream <= 0 {
		c.WatchersPerStream = 1
	}
	if c.Connections <= 0 {
		c.Connections = 16
	}
	if c.Writers <= 0 {
		c.Writers = 16
	}
	if c.ValueSize < 8 {
		c.ValueSize = 100
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = "wb/"
	}
	if c.Mode == "" {
		c.Mode = WatchKeys
	}
}

// watchKey is watcher i's key in the keys and idle modes.
func (c *WatchConfig) watchKey(i int) []byte {
	if c.Mode == WatchIdle {
		return []byte(fmt.Sprintf("%sidle/%08d", c.KeyPrefix, i))
	}
	return []byte(fmt.Sprintf("%sk/%08d", c.KeyPrefix, i))
}

// writeKey is the key of the n-th write.
func (c *WatchConfig) writeKey(n int64) []byte {
	switch c.Mode {
	case WatchKeys:
		return c.watchKey(int(n % int64(max(c.Watchers, 1))))
	case WatchPrefix:
		return []byte(fmt.Sprintf("%sk/%08d", c.KeyPrefix, n%10_000))
	}
	return []byte(fmt.Sprintf("%sw/%08d", c.KeyPrefix, n%10_000))
}

// RunWatch opens the watchers, writes at cfg.Rate for cfg.Duration and
// measures writes and the delivery of their events.
func RunWatch(ctx context.Context, cfg WatchConfig) (*WatchResult, error) {
	cfg.setDefaults()
	if cfg.Mode != WatchKeys && cfg.Mode != WatchPrefix && cfg.Mode != WatchIdle {
		return nil, fmt.Errorf("unknown watch mode %q: want keys, prefix or idle", cfg.Mode)
	}
	c, err := kvclient.New(ctx, kvclient.Options{Endpoints: cfg.Endpoints, PoolSize: cfg.Writers,
		TLS: cfg.Security.TLS, Username: cfg.Security.Username, Password: cfg.Security.Password})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	res := &WatchResult{Mode: cfg.Mode, Watchers: cfg.Watchers, SlowWatchers: cfg.SlowWatchers}
	if cfg.ServerPID > 0 {
		res.ServerRSSBefore = processRSS(cfg.ServerPID)
	}

	// One connection per group of streams, to the first endpoint.
	conns := make([]*grpc.ClientConn, cfg.Connections)
	for i := range conns {
		creds := insecure.NewCredentials()
		if cfg.Security.TLS != nil {
			creds = credentials.NewTLS(cfg.Security.TLS)
		}
		cc, err := grpc.NewClient(kvclient.Target(cfg.Endpoints[0]), grpc.WithTransportCredentials(creds))
		if err != nil {
			return nil, err
		}
		defer cc.Close()
		conns[i] = cc
	}
	wctx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	if cfg.Security.Username != "" {
		tok, err := kvdbv1.NewAuthServiceClient(conns[0]).Authenticate(ctx, &kvdbv1.AuthenticateRequest{Name: cfg.Security.Username, Password: cfg.Security.Password})
		if err != nil {
			return nil, err
		}
		wctx = metadata.AppendToOutgoingContext(wctx, "token", tok.GetToken())
	}

	var (
		events   atomic.Int64
		recvMu   sync.Mutex
		sendHist Histogram
		recvs    []recvSample
		wg       sync.WaitGroup
	)
	open := func(si int, keys [][]byte, prefix bool, read bool) error {
		ws, err := kvdbv1.NewWatchServiceClient(conns[si%len(conns)]).Watch(wctx)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := ws.Send(&kvdbv1.WatchRequest{Request: &kvdbv1.WatchRequest_CreateRequest{CreateRequest: &kvdbv1.WatchCreateRequest{Key: k, Prefix: prefix}}}); err != nil {
				return err
			}
		}
		for range keys {
			r, err := ws.Recv()
			if err != nil {
				return err
			}
			if !r.GetCreated() {
				return fmt.Errorf("bench: watch answered %v", r)
			}
		}
		if !read {
			return nil // a slow watcher: never read again
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var h Histogram
			var mine []recvSample
			for {
				r, err := ws.Recv()
				if err != nil {
					break
				}
				now := time.Now()
				for _, e := range r.GetEvents() {
					if v := e.GetKv().GetValue(); len(v) >= 8 {
						h.Record(now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(v)))))
					}
					mine = append(mine, recvSample{rev: e.GetKv().GetModRevision(), at: now.UnixNano()})
				}
				events.Add(int64(len(r.GetEvents())))
			}
			recvMu.Lock()
			sendHist.Merge(&h)
			recvs = append(recvs, mine...)
			recvMu.Unlock()
		}()
		return nil
	}
	streams := 0
	prefix := []byte(cfg.KeyPrefix + "k/")
	for i := 0; i < cfg.Watchers; i += cfg.WatchersPerStream {
		var keys [][]byte
		for j := i; j < min(i+cfg.WatchersPerStream, cfg.Watchers); j++ {
			if cfg.Mode == WatchPrefix {
				keys = append(keys, prefix)
			} else {
				keys = append(keys, cfg.watchKey(j))
			}
		}
		if err := open(streams, keys, cfg.Mode == WatchPrefix, true); err != nil {
			return nil, fmt.Errorf("bench: opening watcher %d: %w", i, err)
		}
		streams++
	}
	for i := range cfg.SlowWatchers {
		k := prefix
		if cfg.Mode == WatchIdle {
			k = []byte(cfg.KeyPrefix + "w/")
		}
		if err := open(streams+i, [][]byte{k}, true, false); err != nil {
			return nil, fmt.Errorf("bench: opening slow watcher %d: %w", i, err)
		}
		streams++
	}
	res.Streams = streams
	if cfg.ServerPID > 0 {
		res.ServerRSSWatching = processRSS(cfg.ServerPID)
		if cfg.Watchers+cfg.SlowWatchers > 0 {
			res.RSSPerWatcher = float64(res.ServerRSSWatching-res.ServerRSSBefore) / float64(cfg.Watchers+cfg.SlowWatchers)
		}
	}

	// The writers: each write's value starts with its send time.
	var (
		n        atomic.Int64
		errs     atomic.Int64
		ackMu    sync.Mutex
		acks     = map[int64]int64{}
		writeH   Histogram
		writerWG sync.WaitGroup
	)
	var cpuBefore time.Duration
	if cfg.ServerPID > 0 {
		cpuBefore, _ = ProcessCPU(cfg.ServerPID)
	}
	start := time.Now()
	end := start.Add(cfg.Duration)
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Second * time.Duration(cfg.Writers) / time.Duration(cfg.Rate)
	}
	for w := range cfg.Writers {
		writerWG.Add(1)
		go func() {
			defer writerWG.Done()
			var h Histogram
			value := make([]byte, cfg.ValueSize)
			next := start.Add(interval * time.Duration(w) / time.Duration(cfg.Writers))
			for {
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
					next = next.Add(interval)
				}
				sent := time.Now()
				if sent.After(end) || ctx.Err() != nil {
					break
				}
				i := n.Add(1)
				binary.BigEndian.PutUint64(value, uint64(sent.UnixNano()))
				rev, err := c.Put(ctx, cfg.writeKey(i), value)
				ack := time.Now()
				if err != nil {
					errs.Add(1)
					continue
				}
				h.Record(ack.Sub(sent))
				ackMu.Lock()
				acks[rev] = ack.UnixNano()
				ackMu.Unlock()
			}
			ackMu.Lock()
			writeH.Merge(&h)
			ackMu.Unlock()
		}()
	}
	writerWG.Wait()
	elapsed := time.Since(start)
	writes := int64(len(acks))
	if cfg.ServerPID > 0 && writes > 0 {
		if cpu, err := ProcessCPU(cfg.ServerPID); err == nil {
			res.ServerCPUPerWriteus = float64(cpu-cpuBefore) / float64(time.Microsecond) / float64(writes)
		}
	}
	switch cfg.Mode {
	case WatchKeys:
		res.ExpectedEvents = writes
	case WatchPrefix:
		res.ExpectedEvents = writes * int64(cfg.Watchers)
	}
	// Let the last events arrive (bounded), then stop the watchers.
	for deadline := time.Now().Add(10 * time.Second); events.Load() < res.ExpectedEvents && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	cancelWatch()
	wg.Wait()

	var ackH Histogram
	for _, s := range recvs {
		if a, ok := acks[s.rev]; ok {
			ackH.Record(time.Duration(max(s.at-a, 0)))
		}
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	res.Seconds = elapsed.Seconds()
	res.Writes, res.WriteErrors = writes, errs.Load()
	res.WritesPerSec = float64(writes) / elapsed.Seconds()
	res.WriteP50us, res.WriteP99us = us(writeH.Quantile(0.5)), us(writeH.Quantile(0.99))
	res.Events = events.Load()
	res.EventsPerSec = float64(res.Events) / elapsed.Seconds()
	res.AckToEventP50us, res.AckToEventP99us, res.AckToEventMaxus = us(ackH.Quantile(0.5)), us(ackH.Quantile(0.99)), us(ackH.Max())
	res.SendToEventP50us, res.SendToEventP99us = us(sendHist.Quantile(0.5)), us(sendHist.Quantile(0.99))
	return res, nil
}

type recvSample struct {
	rev int64
	at  int64
}

// processRSS is process pid's resident memory in bytes (0 when unknown).
func processRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
