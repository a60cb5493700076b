package service

import "github.com/kvdb/kvdb/internal/core"

// Limits bound what one request may carry (core.Limits); every limit has
// a flag in kvdb-server.
type Limits = core.Limits

// DefaultLimits are the limits a node uses unless configured otherwise.
var DefaultLimits = core.DefaultLimits

// EvictionPolicy says what a node does when a write would pass MaxMemory.
type EvictionPolicy = core.EvictionPolicy

// The eviction policies (core.EvictionPolicy).
const (
	EvictAllKeysLRU     = core.EvictAllKeysLRU
	EvictNone           = core.EvictNone
	EvictVolatileLRU    = core.EvictVolatileLRU
	EvictVolatileTTL    = core.EvictVolatileTTL
	EvictAllKeysRandom  = core.EvictAllKeysRandom
	EvictVolatileRandom = core.EvictVolatileRandom
)

// ParseEvictionPolicy accepts allkeys-lru, volatile-lru, volatile-ttl,
// allkeys-random, volatile-random and noeviction; "" is the default.
func ParseEvictionPolicy(s string) (EvictionPolicy, error) { return core.ParseEvictionPolicy(s) }

// DefaultMaxInFlightRequests is the node-wide cap on KV and transaction
// requests being served at once (-max-inflight-requests).
const DefaultMaxInFlightRequests = core.DefaultMaxInFlightRequests

// DefaultTxnIdleTimeout is how long an interactive transaction may sit idle.
const DefaultTxnIdleTimeout = core.DefaultTxnIdleTimeout
