package core

import (
	"fmt"
	"time"

	"github.com/kvdb/kvdb/internal/engine"
)

// Limits bound what one request may carry. Every limit has a flag in
// kvdb-server; the defaults are documented in the README.
type Limits struct {
	MaxKeySize     int // bytes; default 4 KiB
	MaxValueSize   int // bytes; default 1 MiB
	MaxBatchOps    int // operations in one Batch; default 10,000
	MaxRequestSize int // encoded request bytes; default 4 MiB
	MaxRangeLimit  int // keys one Range returns at most; default 10,000
	MaxTxnOps      int // reads, ranges and writes one transaction holds; default 10,000
	MaxTxnBytes    int // key and value bytes one transaction holds; default 2 MiB
	// MaxResponseBytes bounds the keys and values one read returns (a
	// range, a transaction's range, the ranges of one Execute); past it the
	// read stops with More set, after at least one key. Default 4 MiB, what
	// a gRPC client accepts by default.
	MaxResponseBytes int
	// MaxTTL bounds a put's TTL and a lease's; default 10 years.
	MaxTTL time.Duration
	// MaxLeases bounds the leases that may exist at once; default 1,000,000.
	MaxLeases int
	// MaxWatchesPerStream bounds the watchers open at once on one watch
	// stream; default 1,000. MaxWatchStreams bounds the watch streams
	// open on the node; default 100,000.
	MaxWatchesPerStream int
	MaxWatchStreams     int
}

// DefaultLimits are the limits a node uses unless configured otherwise.
var DefaultLimits = Limits{
	MaxKeySize:     4 << 10,
	MaxValueSize:   1 << 20,
	MaxBatchOps:    10_000,
	MaxRequestSize: 4 << 20,
	MaxRangeLimit:  10_000,
	MaxTxnOps:      10_000,
	MaxTxnBytes:    2 << 20,

	MaxResponseBytes: 4 << 20,
	MaxTTL:           10 * 365 * 24 * time.Hour,
	MaxLeases:        1_000_000,

	MaxWatchesPerStream: 1_000,
	MaxWatchStreams:     100_000,
}

func (l *Limits) setDefaults() {
	d := DefaultLimits
	if l.MaxKeySize <= 0 {
		l.MaxKeySize = d.MaxKeySize
	}
	if l.MaxValueSize <= 0 {
		l.MaxValueSize = d.MaxValueSize
	}
	if l.MaxBatchOps <= 0 {
		l.MaxBatchOps = d.MaxBatchOps
	}
	if l.MaxRequestSize <= 0 {
		l.MaxRequestSize = d.MaxRequestSize
	}
	if l.MaxRangeLimit <= 0 {
		l.MaxRangeLimit = d.MaxRangeLimit
	}
	if l.MaxTxnOps <= 0 {
		l.MaxTxnOps = d.MaxTxnOps
	}
	if l.MaxTxnBytes <= 0 {
		l.MaxTxnBytes = min(d.MaxTxnBytes, l.MaxRequestSize/2)
	}
	if l.MaxResponseBytes <= 0 {
		l.MaxResponseBytes = d.MaxResponseBytes
	}
	if l.MaxTTL <= 0 {
		l.MaxTTL = d.MaxTTL
	}
	if l.MaxLeases <= 0 {
		l.MaxLeases = d.MaxLeases
	}
	if l.MaxWatchesPerStream <= 0 {
		l.MaxWatchesPerStream = d.MaxWatchesPerStream
	}
	if l.MaxWatchStreams <= 0 {
		l.MaxWatchStreams = d.MaxWatchStreams
	}
}

func (l *Limits) checkKey(key []byte) error {
	if len(key) == 0 {
		return invalidf("key must not be empty")
	}
	if len(key) > l.MaxKeySize {
		return invalidf("key is %d bytes, over the max-key-size limit of %d bytes", len(key), l.MaxKeySize)
	}
	return nil
}

func (l *Limits) checkValue(value []byte) error {
	if len(value) > l.MaxValueSize {
		return invalidf("value is %d bytes, over the max-value-size limit of %d bytes", len(value), l.MaxValueSize)
	}
	return nil
}

// checkRangeEnd accepts an empty end (one key), "\x00" (to the end of the
// keyspace) or an end after key.
func (l *Limits) checkRangeEnd(key, end []byte) error {
	if len(end) > l.MaxKeySize {
		return invalidf("range_end is %d bytes, over the max-key-size limit of %d bytes", len(end), l.MaxKeySize)
	}
	op := engine.Op{Type: engine.OpDeleteRange, Key: key, End: end}
	if len(end) > 0 && !(len(end) == 1 && end[0] == 0) {
		if err := engine.ValidateOp(op); err != nil {
			return invalidf("%v", err)
		}
	}
	return nil
}

func (l *Limits) checkRequestSize(size int) error {
	if size > l.MaxRequestSize {
		return invalidf("request is %d bytes, over the max-request-size limit of %d bytes", size, l.MaxRequestSize)
	}
	return nil
}

// Validate reports limits no node should run with.
func (l Limits) Validate() error {
	switch {
	case l.MaxKeySize <= 0 || l.MaxKeySize > engine.MaxKeySize:
		return fmt.Errorf("max-key-size must be between 1 byte and %d bytes", engine.MaxKeySize)
	case l.MaxValueSize < 0 || l.MaxValueSize > engine.MaxValueSize:
		return fmt.Errorf("max-value-size must be between 0 and %d bytes", engine.MaxValueSize)
	case l.MaxBatchOps <= 0:
		return fmt.Errorf("max-batch-ops must be positive")
	case l.MaxRequestSize < l.MaxKeySize+l.MaxValueSize:
		return fmt.Errorf("max-request-size (%d) must hold one key and one value (%d bytes)", l.MaxRequestSize, l.MaxKeySize+l.MaxValueSize)
	case l.MaxRangeLimit <= 0:
		return fmt.Errorf("max-range-limit must be positive")
	case l.MaxTxnOps < 0:
		return fmt.Errorf("max-txn-ops must be positive")
	case l.MaxResponseBytes < 0 || l.MaxResponseBytes > 64<<20:
		return fmt.Errorf("max-response-bytes must be between 1 byte and 64 MiB (the largest frame or message a client accepts)")
	case l.MaxTxnBytes < 0 || l.MaxTxnBytes > l.MaxRequestSize:
		// The commit entry carries every read key and written value.
		return fmt.Errorf("max-txn-bytes must be between 1 byte and max-request-size (%d)", l.MaxRequestSize)
	}
	return nil
}

// kvOverhead approximates what one key-value costs in a reply beyond its
// key and value bytes (revisions, lengths, framing).
const kvOverhead = 40

// fitResponse returns the longest prefix of kvs (at least one key) whose
// keys and values fit in *budget bytes, and whether it cut kvs short; it
// takes what it returns from *budget.
func fitResponse(kvs []engine.KeyValue, keysOnly bool, budget *int) ([]engine.KeyValue, bool) {
	for i, kv := range kvs {
		size := len(kv.Key) + kvOverhead
		if !keysOnly {
			size += len(kv.Value)
		}
		if size > *budget && i > 0 {
			*budget = 0
			return kvs[:i], true
		}
		*budget -= size
	}
	return kvs, false
}
