// Package core is KVDB's operation layer: every client operation, whatever
// transport it arrived on, is validated, admitted, proposed or read, and
// answered here. The gRPC, binary-protocol (and any later) adapters only
// translate their requests into this package's plain Go types and its
// results and errors back into their own; they never touch the engine's
// write side, the raft node or each other.
//
// What lives here, once for every transport:
//   - validation against Limits, and the shaping of results (range limits,
//     prev-kv, delete counts, batch counts);
//   - admission: the node-wide in-flight cap, and MaxMemory with eviction;
//   - the in-flight count that shutdown drains (Enter, Leave, Drain);
//   - writes: encoded with package command and coalesced into shared raft
//     entries; reads: ReadIndex waits for linearizable reads;
//   - interactive and one-shot transactions;
//   - one error type with codes (Code, CodeOf) and one operation-name table
//     (Op) for STATS and metrics.
//
// docs/architecture.md shows one request's path through these layers.
// All exported methods are safe for concurrent use.
package core

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvdb/kvdb/internal/auth"
	"github.com/kvdb/kvdb/internal/engine"
	"github.com/kvdb/kvdb/internal/raftnode"
	"github.com/kvdb/kvdb/internal/watch"
)

// Defaults of Config.
const (
	DefaultRequestTimeout      = 5 * time.Second
	DefaultTxnIdleTimeout      = 30 * time.Second
	DefaultMaxTxns             = 10_000
	DefaultMaxInFlightRequests = 10_000
)

// Config tunes the operation layer.
type Config struct {
	MemberID uint64 // raft member id: prefixes transaction ids, seeds eviction
	Limits   Limits
	// MaxMemory is the MemoryUsage allowed (0: no limit) and EvictionPolicy
	// what happens at it (default allkeys-lru).
	MaxMemory      int64
	EvictionPolicy EvictionPolicy
	// RequestTimeout bounds requests without a deadline.
	RequestTimeout time.Duration
	// TxnIdleTimeout discards an interactive transaction idle this long;
	// MaxTxns bounds the open ones.
	TxnIdleTimeout time.Duration
	MaxTxns        int
	// MaxInFlightRequests caps the operations served at once; past it
	// Enter fails with ErrOverloaded. 0 means DefaultMaxInFlightRequests,
	// negative means no cap.
	MaxInFlightRequests int
	Observer            Observer
	Logger              *slog.Logger
	// Auth is the replicated auth state (the one the state machine applies
	// to); nil: a private, disabled one.
	Auth *auth.Store
	// TokenTTL is how long tokens stay valid (default DefaultTokenTTL).
	TokenTTL time.Duration
	// WatchHistory tunes the watch hub: its history window and buffers.
	WatchHistory watch.Config
	// WatchProgressInterval is how often idle watchers that asked for
	// progress notifications hear the current revision (default 10 min).
	WatchProgressInterval time.Duration
}

func (c *Config) setDefaults() {
	c.Limits.setDefaults()
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.TxnIdleTimeout <= 0 {
		c.TxnIdleTimeout = DefaultTxnIdleTimeout
	}
	if c.MaxTxns <= 0 {
		c.MaxTxns = DefaultMaxTxns
	}
	if c.MaxInFlightRequests == 0 {
		c.MaxInFlightRequests = DefaultMaxInFlightRequests
	}
	if c.EvictionPolicy == "" {
		c.EvictionPolicy = EvictAllKeysLRU
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Auth == nil {
		c.Auth = auth.NewStore()
	}
	if c.TokenTTL <= 0 {
		c.TokenTTL = DefaultTokenTTL
	}
}

// Core serves operations against one node's store and raft node.
type Core struct {
	cfg    Config
	limits Limits
	// leaseLists holds a token per lease listing running (Leases).
	leaseLists chan struct{}
	log        *slog.Logger
	store      *engine.Store
	node       *raftnode.Node
	mem        *memoryGuard
	txns       *txnManager
	writes     *coalescer
	auth       *auth.Store
	lessor     lessor

	watches *watch.Hub

	limiter      *auth.Limiter
	authFailures atomic.Int64

	// tokens caches verified tokens for the auth revision tokRev.
	tokMu  sync.RWMutex
	tokRev uint64
	tokens map[string]cachedToken

	limit    int64 // in-flight cap; <= 0: none
	inflight atomic.Int64
	capped   atomic.Int64 // operations counted against the cap
	rejected atomic.Int64
	draining atomic.Bool

	// testHookBeforeReadIndex, when set by a test before requests, runs
	// before each ReadIndex a read batch asks for.
	testHookBeforeReadIndex func()

	stopOnce sync.Once
	stopC    chan struct{}
	wg       sync.WaitGroup
}

// New prepares the operation layer over store. Run starts it once the raft
// node exists (the state machine the node is started with needs Evicted).
func New(cfg Config, store *engine.Store) *Core {
	cfg.setDefaults()
	c := &Core{
		leaseLists: make(chan struct{}, maxLeaseLists),
		cfg:        cfg,
		limits:     cfg.Limits,
		log:        cfg.Logger,
		store:      store,
		auth:       cfg.Auth,
		limiter:    auth.NewLimiter(),
		limit:      int64(cfg.MaxInFlightRequests),
		stopC:      make(chan struct{}),
	}
	if cfg.WatchHistory.MaxResponseBytes <= 0 {
		cfg.WatchHistory.MaxResponseBytes = min(cfg.Limits.MaxResponseBytes, 1<<20)
	}
	c.watches = watch.NewHub(cfg.WatchHistory, store.Revision())
	store.SetObserver(c.watches)
	c.mem = newMemoryGuard(store, cfg.MaxMemory, cfg.EvictionPolicy)
	c.txns = newTxnManager(cfg.TxnIdleTimeout, cfg.MaxTxns, &c.limits, c.mem, formatID(cfg.MemberID))
	return c
}

// Evicted is the state machine's hook after an eviction entry is applied:
// writes waiting for room look again.
func (c *Core) Evicted() { c.mem.evicted() }

// Run starts the coalescer, the transaction sweeper and, when MaxMemory
// is set with allkeys-lru, the eviction driver. Stop ends them.
func (c *Core) Run(node *raftnode.Node) {
	c.node = node
	c.writes = newCoalescer(c)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.txns.run(c.stopC)
	}()
	if c.cfg.MaxMemory > 0 && c.cfg.EvictionPolicy != EvictNone {
		c.wg.Add(1)
		go c.evictLoop()
	}
	c.wg.Add(1)
	go c.expireLoop()
}

// Limits returns the limits requests are checked against.
func (c *Core) Limits() Limits { return c.limits }

// SetLimits replaces the limits; tests call it before traffic.
func (c *Core) SetLimits(l Limits) { c.limits = l }

// Enter admits one operation. It counts it in flight, so Drain waits for
// it, and, when capped, under the node-wide cap. It fails with
// ErrShuttingDown while the node drains and ErrOverloaded over the cap.
// Every nil return must be paired with one Leave(capped).
func (c *Core) Enter(capped bool) error {
	c.inflight.Add(1)
	if c.draining.Load() {
		c.inflight.Add(-1)
		return ErrShuttingDown
	}
	if capped && c.limit > 0 {
		if c.capped.Add(1) > c.limit {
			c.capped.Add(-1)
			c.inflight.Add(-1)
			c.rejected.Add(1)
			return ErrOverloaded
		}
	}
	return nil
}

// Leave ends an operation Enter admitted.
func (c *Core) Leave(capped bool) {
	if capped && c.limit > 0 {
		c.capped.Add(-1)
	}
	c.inflight.Add(-1)
}

// Observe records a finished operation's latency since start.
func (c *Core) Observe(p Protocol, op Op, start time.Time) {
	if c.cfg.Observer != nil {
		c.cfg.Observer.Observe(p, op, time.Since(start))
	}
}

// InFlight is the number of operations admitted and not yet finished.
func (c *Core) InFlight() int64 { return c.inflight.Load() }

// Rejected is the number of operations refused over the in-flight cap.
func (c *Core) Rejected() int64 { return c.rejected.Load() }

// Drain refuses new operations and waits until the admitted ones finish or
// ctx ends. Writes already queued still reach raft and are answered.
func (c *Core) Drain(ctx context.Context) {
	c.draining.Store(true)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for c.inflight.Load() > 0 && ctx.Err() == nil {
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

// Stop ends the background work: queued writes fail with ErrStopped, and
// Stop returns once every write handed to raft has been answered.
func (c *Core) Stop() {
	c.stopOnce.Do(func() {
		c.draining.Store(true)
		close(c.stopC)
	})
	c.wg.Wait()
	if c.writes != nil {
		c.writes.wg.Wait()
	}
}

// requestContext bounds ctx by RequestTimeout when it has no deadline.
func (c *Core) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.cfg.RequestTimeout)
}

// RequestTimeout is the deadline given to requests that carry none.
func (c *Core) RequestTimeout() time.Duration { return c.cfg.RequestTimeout }

// TxnStats reports open interactive transactions and the commits, aborts
// and expiries so far.
func (c *Core) TxnStats() (active int, commits, aborts, expired int64) {
	return c.txns.activeCount(), c.txns.commits.Load(), c.txns.aborts.Load(), c.txns.expiredN.Load()
}
