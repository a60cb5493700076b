package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvdb/kvdb/internal/engine"
)

// maxTxnIDLen bounds a client-chosen transaction id.
const maxTxnIDLen = 128

// expiredMemory is how many expired ids are remembered (to answer "expired"
// rather than "not found"), and for how many idle timeouts.
const (
	expiredMemory      = 10_000
	expiredMemoryTimes = 10
)

// txnManager holds this node's open interactive transactions. Sessions live
// only on the node that served Begin; nothing here is replicated until
// Commit proposes the session's reads and writes as one raft entry.
//
// All methods are safe for concurrent use. Lock order: m.mu before
// txnSession.mu (only sweep takes both, and it takes neither session lock).
type txnManager struct {
	timeout time.Duration
	maxTxns int
	limits  *Limits
	// mem admits what sessions hold against MaxMemory; buffered is the sum
	// of their reservations.
	mem      *memoryGuard
	buffered atomic.Int64
	// now is the clock; tests replace it to expire sessions without sleeping.
	now func() time.Time

	mu      sync.Mutex
	active  map[string]*txnSession
	expired map[string]time.Time // recently expired id → when it expired
	// owned counts the open sessions of each named user (auth on): one
	// user may hold at most half of maxTxns, so it cannot lock the others
	// out of transactions.
	owned map[string]int

	seq                       atomic.Uint64
	idPrefix                  string
	commits, aborts, expiredN atomic.Int64
}

func newTxnManager(timeout time.Duration, maxTxns int, limits *Limits, mem *memoryGuard, idPrefix string) *txnManager {
	return &txnManager{
		timeout: timeout, maxTxns: maxTxns, limits: limits, mem: mem, now: time.Now, idPrefix: idPrefix,
		active: map[string]*txnSession{}, expired: map[string]time.Time{}, owned: map[string]int{},
	}
}

// txnSession is one open transaction. mu serialises the calls of one
// transaction; lastUsed and state are atomics so the sweeper never waits
// for a session in use.
type txnSession struct {
	id       string
	owner    string // the user who began it ("" without auth)
	startRev int64
	// authRev is the auth revision when it began: its commit carries it,
	// so a change of the auth state while it is open refuses the commit.
	authRev  atomic.Uint64
	lastUsed atomic.Int64 // unix nanoseconds
	// state is txnActive until Commit/Rollback (txnEnded) or expiry.
	state atomic.Int32

	mu     sync.Mutex
	reads  map[string]int64 // key → mod revision when first read (0: absent)
	ranges []engine.RangeCheck
	writes map[string]txnWrite
	ops    int // recorded reads + ranges + buffered writes
	bytes  int // bytes of keys and values recorded or buffered
	// held is what the session has reserved against MaxMemory for what it
	// records and buffers; whoever ends the session gives it back (release).
	held atomic.Int64
}

const (
	txnActive int32 = iota
	txnEnded
	txnExpired
)

// txnWrite is one buffered write; the last write of a key wins.
type txnWrite struct {
	value   []byte
	deleted bool
	// deadline and lease of a put (0: none), see TxnPutKeep.
	deadline, lease int64
}

// validTxnID accepts what a REPL user types: 1-128 printable ASCII
// characters without spaces.
func validTxnID(id string) error {
	if len(id) > maxTxnIDLen {
		return invalidf("txn_id is %d bytes, over the limit of %d", len(id), maxTxnIDLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return invalidf("txn_id %q: only printable ASCII without spaces is allowed", id)
		}
	}
	return nil
}

// begin opens a session under id (or a fresh id when empty).
func (m *txnManager) begin(id string, startRev int64, owner string) (*txnSession, error) {
	if err := validTxnID(id); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.active) >= m.maxTxns {
		return nil, fmt.Errorf("%w: %d open, the max-txns limit", ErrTooManyTxns, len(m.active))
	}
	if n := m.owned[owner]; owner != "" && n >= m.maxPerUser() {
		return nil, fmt.Errorf("%w: user %q has %d open, half of the max-txns limit", ErrTooManyTxns, owner, n)
	}
	if id == "" {
		// The prefix (the member id) keeps ids from different nodes apart;
		// the loop skips any a client happened to choose.
		for range 16 {
			id = fmt.Sprintf("%s-%d", m.idPrefix, m.seq.Add(1))
			if _, taken := m.active[id]; !taken {
				break
			}
		}
	}
	if _, taken := m.active[id]; taken {
		return nil, fmt.Errorf("%w: %q is open", ErrTxnExists, id)
	}
	delete(m.expired, id)
	s := &txnSession{id: id, owner: owner, startRev: startRev, reads: map[string]int64{}, writes: map[string]txnWrite{}}
	s.lastUsed.Store(m.now().UnixNano())
	m.active[id] = s
	if owner != "" {
		m.owned[owner]++
	}
	return s, nil
}

// maxPerUser is the most sessions one named user may hold open.
func (m *txnManager) maxPerUser() int { return max(1, m.maxTxns/2) }

// removeLocked takes s out of the open set.
func (m *txnManager) removeLocked(s *txnSession) {
	delete(m.active, s.id)
	if s.owner == "" {
		return
	}
	if m.owned[s.owner]--; m.owned[s.owner] <= 0 {
		delete(m.owned, s.owner)
	}
}

// use returns the open session id, locked; the caller must call s.mu.Unlock.
func (m *txnManager) use(id, owner string) (*txnSession, error) {
	m.mu.Lock()
	s, err := m.lookupLocked(id, owner)
	m.mu.Unlock()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.state.Load() != txnActive {
		// Committed, rolled back or expired while this call waited.
		s.mu.Unlock()
		return nil, m.goneError(id)
	}
	s.lastUsed.Store(m.now().UnixNano())
	return s, nil
}

// end removes session id from the open set and returns it locked, for
// Commit and Rollback; the caller must call s.mu.Unlock.
func (m *txnManager) end(id, owner string) (*txnSession, error) {
	m.mu.Lock()
	s, err := m.lookupLocked(id, owner)
	if err == nil {
		m.removeLocked(s)
	}
	m.mu.Unlock()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if !s.state.CompareAndSwap(txnActive, txnEnded) {
		s.mu.Unlock()
		return nil, m.goneError(id)
	}
	// The buffers stay alive until the caller is done, but a commit's own
	// admission (txnGrowth) covers its writes from here on.
	m.release(s)
	return s, nil
}

// hold records n bytes reserved against MaxMemory for session s. If s has
// ended meanwhile (expiry does not take s.mu), whoever ended it may have
// released it already, so hold gives them back itself: either way they
// are released exactly once.
func (m *txnManager) hold(s *txnSession, n int64) {
	m.buffered.Add(n)
	s.held.Add(n)
	if s.state.Load() != txnActive {
		m.release(s)
	}
}

// release gives back what session s holds against MaxMemory; it is called
// once s has left txnActive.
func (m *txnManager) release(s *txnSession) {
	if n := s.held.Swap(0); n != 0 {
		m.buffered.Add(-n)
		m.mem.release(n)
	}
}

// lookupLocked finds owner's open session, expiring it first if it sat idle
// past the timeout (so expiry does not depend on when the sweeper runs).
func (m *txnManager) lookupLocked(id, owner string) (*txnSession, error) {
	if id == "" {
		return nil, invalidf("txn_id must not be empty")
	}
	s, ok := m.active[id]
	if !ok || s.owner != owner {
		// Another user's transaction reads as one that does not exist.
		return nil, m.goneErrorLocked(id)
	}
	if m.idle(s, m.now()) {
		m.expireLocked(s, m.now())
		return nil, m.goneErrorLocked(id)
	}
	return s, nil
}

func (m *txnManager) idle(s *txnSession, now time.Time) bool {
	return now.UnixNano()-s.lastUsed.Load() > int64(m.timeout)
}

func (m *txnManager) expireLocked(s *txnSession, now time.Time) {
	if m.active[s.id] == s {
		m.removeLocked(s)
	}
	if s.state.CompareAndSwap(txnActive, txnExpired) {
		m.release(s)
		m.expiredN.Add(1)
		if len(m.expired) < expiredMemory {
			m.expired[s.id] = now
		}
	}
}

func (m *txnManager) goneError(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.goneErrorLocked(id)
}

func (m *txnManager) goneErrorLocked(id string) error {
	if _, ok := m.expired[id]; ok {
		return fmt.Errorf("%w: %q sat idle longer than the %v timeout and was discarded; begin a new transaction", ErrTxnExpired, id, m.timeout)
	}
	return fmt.Errorf("%w: %q is not open on this node (never begun here, or already committed or rolled back)", ErrTxnNotFound, id)
}

// sweep expires idle sessions and forgets old expired ids. Its work is
// bounded by the number of sessions and remembered ids.
func (m *txnManager) sweep() {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.active {
		if m.idle(s, now) {
			m.expireLocked(s, now)
		}
	}
	for id, at := range m.expired {
		if now.Sub(at) > expiredMemoryTimes*m.timeout {
			delete(m.expired, id)
		}
	}
}

// sweepInterval is a quarter of the timeout, within [10ms, 1s].
func (m *txnManager) sweepInterval() time.Duration {
	return min(max(m.timeout/4, 10*time.Millisecond), time.Second)
}

// run sweeps until stop is closed.
func (m *txnManager) run(stop <-chan struct{}) {
	t := time.NewTicker(m.sweepInterval())
	defer t.Stop()
	for {
		select {
		case <-t.C:
			m.sweep()
		case <-stop:
			return
		}
	}
}

func (m *txnManager) activeCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.active)
}

// txnOpOverhead approximates the heap one recorded read, range or
// buffered write costs beyond its key and value bytes: its map slot or
// slice element, string and slice headers, allocation rounding.
const txnOpOverhead = 64

// charge accounts n more operations and b more bytes of session s against
// the limits: max-txn-ops and max-txn-bytes for the session, and
// MaxMemory for all of them, which the bytes (plus txnOpOverhead per
// operation) are reserved against until the session ends, as a write's
// are until it applies. So the buffers of every open transaction on this
// node, up to max-txns times max-txn-bytes, can never outgrow the memory
// limit: when they would, the call fails with ErrMemoryLimit
// (RESOURCE_EXHAUSTED), or, with an evicting policy, waits for eviction
// to make room as a write does. Callers hold s.mu.
func (m *txnManager) charge(ctx context.Context, stopC <-chan struct{}, s *txnSession, n, b int) error {
	l := m.limits
	if s.ops+n > l.MaxTxnOps {
		return invalidf("transaction %q would hold %d operations, over the max-txn-ops limit of %d", s.id, s.ops+n, l.MaxTxnOps)
	}
	if s.bytes+b > l.MaxTxnBytes {
		return invalidf("transaction %q would hold %d bytes, over the max-txn-bytes limit of %d", s.id, s.bytes+b, l.MaxTxnBytes)
	}
	grow := int64(b) + int64(n)*txnOpOverhead
	held, err := m.mem.admit(ctx, stopC, grow)
	if err != nil {
		if !errors.Is(err, ErrMemoryLimit) {
			return err
		}
		return fmt.Errorf("transaction %q cannot hold %d more bytes: open transactions' buffers (%d bytes on this node) count against the max-memory limit of %d bytes: %w",
			s.id, grow, m.buffered.Load(), m.mem.limit, err)
	}
	m.hold(s, held)
	s.ops += n
	s.bytes += b
	return nil
}

// recordRead remembers the first mod revision seen for key.
func (m *txnManager) recordRead(ctx context.Context, stopC <-chan struct{}, s *txnSession, key []byte, mod int64) error {
	if _, seen := s.reads[string(key)]; seen {
		return nil
	}
	if err := m.charge(ctx, stopC, s, 1, len(key)); err != nil {
		return err
	}
	s.reads[string(key)] = mod
	return nil
}

// bufferedIn returns the buffered writes with keys in [start, end), sorted.
func (s *txnSession) bufferedIn(start, end []byte) []string {
	all := len(end) == 1 && end[0] == 0
	var keys []string
	for k := range s.writes {
		if k >= string(start) && (all || k < string(end)) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// mergeWrites overlays the buffered writes (sorted keys) on kvs, the store's
// view of the same range, and returns the merged keys in order.
func (s *txnSession) mergeWrites(kvs []engine.KeyValue, keys []string) []engine.KeyValue {
	out := make([]engine.KeyValue, 0, len(kvs)+len(keys))
	i := 0
	for _, k := range keys {
		for i < len(kvs) && string(kvs[i].Key) < k {
			out = append(out, kvs[i])
			i++
		}
		if i < len(kvs) && string(kvs[i].Key) == k {
			i++ // replaced or deleted by the transaction
		}
		if w := s.writes[k]; !w.deleted {
			out = append(out, engine.KeyValue{Key: []byte(k), Value: w.value})
		}
	}
	return append(out, kvs[i:]...)
}

// conflictError is an ABORTED commit naming what changed.
type conflictError struct {
	txnID    string
	conflict *engine.Conflict
}

func (e *conflictError) Error() string {
	return fmt.Sprintf("transaction %q aborted: %s changed since it was read; retry the transaction", e.txnID, e.conflict)
}

func (e *conflictError) Is(target error) bool { return target == ErrTxnConflict }

// keyAfter is the smallest key greater than k (k + "\x00").
func keyAfter(k []byte) []byte {
	return append(bytes.Clone(k), 0)
}
