package core

import (
	"context"
	"time"

	"github.com/kvdb/kvdb/internal/auth"
	"github.com/kvdb/kvdb/internal/engine"
)

// KeyValue is a key with its value and revisions.
type KeyValue = engine.KeyValue

// RangeRequest reads the keys in [Key, End), or Key alone when End is
// empty; Prefix makes End the end of Key's prefix. End "\x00" with an
// empty Key reads the whole keyspace. Limit 0 means MaxRangeLimit.
type RangeRequest struct {
	Key, End     []byte
	Prefix       bool
	Limit        int64
	KeysOnly     bool
	CountOnly    bool
	Serializable bool
}

// RangeResult is a range's answer at Revision. Count is the number of keys
// in the whole range, More whether keys beyond KVs remain.
type RangeResult struct {
	Revision int64
	KVs      []KeyValue
	Count    int64
	More     bool
}

// WaitRead makes the next local read linearizable: it returns once this
// node has applied everything committed when it was called. A serializable
// read does not wait.
func (c *Core) WaitRead(ctx context.Context, serializable bool) error {
	if serializable {
		return nil
	}
	if h := c.testHookBeforeReadIndex; h != nil {
		h()
	}
	// A lone voter's leader that has applied its read index reads at once,
	// without a deadline to arm.
	if c.ReadableNow() {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		// The request timeout without a timer per read.
		return c.node.ReadIndexWithin(ctx, c.cfg.RequestTimeout)
	}
	return c.node.ReadIndex(ctx)
}

// ReadableNow reports whether a linearizable read may be served from the
// local state at once, with no ReadIndex to wait for (a lone voter's leader
// that has applied its read index); adapters then serve it inline.
func (c *Core) ReadableNow() bool {
	return c.testHookBeforeReadIndex == nil && c.node.ReadableNow()
}

// SetTestHookBeforeReadIndex installs a function run before each
// ReadIndex; tests use it to order reads against writes.
func (c *Core) SetTestHookBeforeReadIndex(h func()) { c.testHookBeforeReadIndex = h }

// CheckGet validates a Get and checks the caller may read the key.
func (c *Core) CheckGet(ctx context.Context, key []byte) error {
	if _, err := c.authenticated(ctx); err != nil {
		return err
	}
	if err := c.limits.checkKey(key); err != nil {
		return err
	}
	return c.authorize(ctx, auth.Read, key, nil)
}

// Get reads one key; ErrKeyNotFound when it is absent.
func (c *Core) Get(ctx context.Context, key []byte, serializable bool) (KeyValue, int64, error) {
	if err := c.CheckGet(ctx, key); err != nil {
		return KeyValue{}, 0, err
	}
	if err := c.WaitRead(ctx, serializable); err != nil {
		return KeyValue{}, 0, err
	}
	return c.ReadGet(key)
}

// ReadGet reads a validated key from the local store, after WaitRead.
func (c *Core) ReadGet(key []byte) (KeyValue, int64, error) {
	kv, ok := c.store.Get(key)
	// The clock is read only for a key that can expire.
	if !ok || (kv.Deadline != 0 || kv.Lease != 0) && c.hidden(kv, time.Now()) {
		return KeyValue{}, 0, ErrKeyNotFound
	}
	return kv, c.store.Revision(), nil
}

// hidden reports whether a read must not return kv: its deadline passed,
// or (on the leader) its lease's did, and the delete has not applied yet.
func (c *Core) hidden(kv KeyValue, now time.Time) bool {
	if kv.Expired(now.UnixMilli()) {
		return true
	}
	return kv.Lease != 0 && c.leaseOverdue(kv.Lease, now)
}

// visible drops from kvs the keys a read must not return (hidden), and
// lowers count by as many; kvs is copied only when something is dropped.
func (c *Core) visible(kvs []KeyValue, count int64, now time.Time) ([]KeyValue, int64) {
	for i, kv := range kvs {
		if !c.hidden(kv, now) {
			continue
		}
		out := append([]KeyValue(nil), kvs[:i]...)
		for _, kv := range kvs[i+1:] {
			if !c.hidden(kv, now) {
				out = append(out, kv)
			}
		}
		dropped := int64(len(kvs) - len(out))
		return out, max(count-dropped, 0)
	}
	return kvs, count
}

// CheckRange validates r, checks the caller may read its keys, and
// normalises it in place: Prefix becomes End, Limit becomes the number of
// keys to return.
func (c *Core) CheckRange(ctx context.Context, r *RangeRequest) error {
	if _, err := c.authenticated(ctx); err != nil {
		return err
	}
	key, end, err := c.rangeBounds(r.Key, r.End, r.Prefix)
	if err != nil {
		return err
	}
	limit, err := c.rangeLimit(r.Limit)
	if err != nil {
		return err
	}
	if err := c.authorize(ctx, auth.Read, key, end); err != nil {
		return err
	}
	r.Key, r.End, r.Prefix, r.Limit = key, end, false, int64(limit)
	return nil
}

// Range validates r, waits unless it is serializable, and reads.
func (c *Core) Range(ctx context.Context, r RangeRequest) (RangeResult, error) {
	if err := c.CheckRange(ctx, &r); err != nil {
		return RangeResult{}, err
	}
	if err := c.WaitRead(ctx, r.Serializable); err != nil {
		return RangeResult{}, err
	}
	return c.ReadRange(&r), nil
}

// ReadRange reads a range CheckRange accepted from the local store, after
// WaitRead. With CountOnly, KVs is empty; with KeysOnly, values are. KVs
// stop at Limit keys or MaxResponseBytes (after at least one key), with
// More set; Count always counts the whole range.
func (c *Core) ReadRange(r *RangeRequest) RangeResult {
	res := c.store.Range(r.Key, r.End, engine.RangeOptions{Limit: int(r.Limit), KeysOnly: r.KeysOnly, CountOnly: r.CountOnly,
		Now: nowMillis(), HideLeases: c.overdueLeases()})
	out := RangeResult{Revision: res.Revision, Count: res.Count, More: res.More}
	if !r.CountOnly {
		budget := c.limits.MaxResponseBytes
		var cut bool
		out.KVs, cut = fitResponse(res.KVs, r.KeysOnly, &budget)
		out.More = out.More || cut
	}
	return out
}

// rangeBounds validates a range request's key, range_end and prefix and
// returns the [key, end) the engine reads (end empty: just key).
func (c *Core) rangeBounds(key, end []byte, prefix bool) ([]byte, []byte, error) {
	if prefix {
		if len(key) == 0 {
			end = []byte{0}
		} else {
			end = engine.PrefixEnd(key)
		}
	}
	// An empty key with range_end "\x00" is a scan of every key.
	if len(key) == 0 && !(len(end) == 1 && end[0] == 0) {
		return nil, nil, invalidf("key must not be empty (use prefix with an empty key, or range_end \"\\x00\", to scan everything)")
	}
	if len(key) > c.limits.MaxKeySize {
		return nil, nil, invalidf("key is %d bytes, over the max-key-size limit of %d bytes", len(key), c.limits.MaxKeySize)
	}
	if err := c.limits.checkRangeEnd(key, end); err != nil {
		return nil, nil, err
	}
	return key, end, nil
}

// rangeLimit turns a request's limit into the number of keys to return.
func (c *Core) rangeLimit(limit int64) (int, error) {
	if limit < 0 {
		return 0, invalidf("limit must not be negative")
	}
	if limit == 0 || limit > int64(c.limits.MaxRangeLimit) {
		return c.limits.MaxRangeLimit, nil
	}
	return int(limit), nil
}
