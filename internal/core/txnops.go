package core

import (
	"bytes"
	"context"
	"slices"
	"time"

	"github.com/kvdb/kvdb/internal/auth"
	"github.com/kvdb/kvdb/internal/command"
	"github.com/kvdb/kvdb/internal/engine"
)

// Interactive transactions: Begin opens a session on this node, TxnGet and
// TxnRange read the store (recording what they saw), TxnPut and TxnDelete
// buffer writes, and Commit proposes the recorded reads and buffered writes
// as one entry that the state machine validates (optimistic concurrency:
// ErrTxnConflict, naming the key, when a read changed). Reads are served
// from the local store after Begin confirmed the node is current
// (ReadIndex); their correctness does not rest on that, because Commit
// validates every read when its entry is applied.

// BeginResult names the opened transaction and its start revision.
type BeginResult struct {
	ID            string
	StartRevision int64
}

// Begin opens a transaction under id, or a fresh id when id is empty.
func (c *Core) Begin(ctx context.Context, id string) (BeginResult, error) {
	authRev := c.authRevision()
	user, err := c.authenticated(ctx)
	if err != nil {
		return BeginResult{}, err
	}
	if err := validTxnID(id); err != nil {
		return BeginResult{}, err
	}
	if err := c.WaitRead(ctx, false); err != nil {
		return BeginResult{}, err
	}
	rev := c.store.Revision()
	sess, err := c.txns.begin(id, rev, user)
	if err != nil {
		return BeginResult{}, err
	}
	sess.authRev.Store(authRev)
	return BeginResult{ID: sess.id, StartRevision: rev}, nil
}

// TxnGet reads key inside transaction id: its own buffered write if it has
// one, else the store (and the read is recorded for Commit's validation).
// It returns the key-value and the store's revision.
func (c *Core) TxnGet(ctx context.Context, id string, key []byte) (KeyValue, int64, error) {
	if err := c.CheckGet(ctx, key); err != nil {
		return KeyValue{}, 0, err
	}
	user, _ := UserOf(ctx)
	sess, err := c.txns.use(id, user)
	if err != nil {
		return KeyValue{}, 0, err
	}
	defer sess.mu.Unlock()
	if w, ok := sess.writes[string(key)]; ok {
		// The transaction's own write: its answer does not depend on the
		// store, so nothing is recorded.
		if w.deleted {
			return KeyValue{}, 0, ErrKeyNotFound
		}
		return KeyValue{Key: bytes.Clone(key), Value: w.value, Deadline: w.deadline, Lease: w.lease}, c.store.Revision(), nil
	}
	kv, found := c.store.Get(key)
	now := time.Now()
	// A key past its deadline is read as absent (mod revision 0), as the
	// commit, which logs its clock, will see it.
	mod := kv.ModRevision
	if kv.Expired(now.UnixMilli()) {
		mod = 0
	}
	if err := c.txns.recordRead(ctx, c.stopC, sess, key, mod); err != nil {
		return KeyValue{}, 0, err
	}
	if !found || c.hidden(kv, now) {
		return KeyValue{}, 0, ErrKeyNotFound
	}
	return kv, c.store.Revision(), nil
}

// TxnRange reads a range inside transaction id, the buffered writes laid
// over the store's keys. Serializable is ignored; Count is the number of
// keys read (returned unless CountOnly).
func (c *Core) TxnRange(ctx context.Context, id string, r RangeRequest) (RangeResult, error) {
	if err := c.CheckRange(ctx, &r); err != nil {
		return RangeResult{}, err
	}
	limit := int(r.Limit)
	user, _ := UserOf(ctx)
	sess, err := c.txns.use(id, user)
	if err != nil {
		return RangeResult{}, err
	}
	defer sess.mu.Unlock()
	key, end := checkableRange(r.Key, r.End)
	own := sess.bufferedIn(key, end)
	// Own deletes may hide store keys, so read enough to fill limit anyway.
	// Keys past their deadline are skipped by the read itself, so the
	// limit counts only keys it can return; the commit, logging its clock,
	// sees them absent too.
	now := time.Now()
	res := c.store.Range(key, end, engine.RangeOptions{Limit: limit + len(own), Now: now.UnixMilli()})
	checkEnd := end
	if res.More {
		// Only the part of the range actually read is validated.
		checkEnd = keyAfter(res.KVs[len(res.KVs)-1].Key)
		own = sess.bufferedIn(key, checkEnd)
	}
	if err := c.txns.charge(ctx, c.stopC, sess, 1, len(key)+len(checkEnd)); err != nil {
		return RangeResult{}, err
	}
	// The check outlives the request: it keeps bytes of its own.
	sess.ranges = append(sess.ranges, engine.RangeCheckOf(bytes.Clone(key), bytes.Clone(checkEnd), res.KVs))
	kvs := sess.mergeWrites(res.KVs, own)
	out := RangeResult{Revision: res.Revision, More: res.More}
	// The answer also hides the keys of a lease past its deadline.
	kvs, _ = c.visible(kvs, 0, now)
	if len(kvs) > limit {
		kvs, out.More = kvs[:limit], true
	}
	budget := c.limits.MaxResponseBytes
	if fit, cut := fitResponse(kvs, r.KeysOnly, &budget); cut {
		kvs, out.More = fit, true
	}
	if r.KeysOnly {
		for i := range kvs {
			kvs[i].Value = nil
		}
	}
	out.Count = int64(len(kvs))
	if !r.CountOnly {
		out.KVs = kvs
	}
	return out, nil
}

// TxnPut buffers a put in transaction id; the bytes are copied.
func (c *Core) TxnPut(ctx context.Context, id string, key, value []byte) error {
	if _, err := c.PreparePut(ctx, key, value, false); err != nil {
		return err
	}
	return c.bufferWrite(ctx, id, key, txnWrite{value: bytes.Clone(value)})
}

// TxnPutKeep buffers a put of key that keeps the deadline and lease of
// read, the key as this transaction read it with TxnGet (zero when it was
// absent): a read-modify-write such as Redis's INCR leaves a key's TTL
// alone. The read is validated at commit, so the key still has that
// deadline and lease when the put applies.
func (c *Core) TxnPutKeep(ctx context.Context, id string, key []byte, read KeyValue, value []byte) error {
	if _, err := c.PreparePut(ctx, key, value, false); err != nil {
		return err
	}
	return c.bufferWrite(ctx, id, key, txnWrite{value: bytes.Clone(value), deadline: read.Deadline, lease: read.Lease})
}

// TxnDelete buffers the delete of one key in transaction id.
func (c *Core) TxnDelete(ctx context.Context, id string, key []byte) error {
	if _, err := c.authenticated(ctx); err != nil {
		return err
	}
	if err := c.limits.checkKey(key); err != nil {
		return err
	}
	if err := c.authorize(ctx, auth.Write, key, nil); err != nil {
		return err
	}
	return c.bufferWrite(ctx, id, key, txnWrite{deleted: true})
}

func (c *Core) bufferWrite(ctx context.Context, id string, key []byte, w txnWrite) error {
	user, _ := UserOf(ctx)
	sess, err := c.txns.use(id, user)
	if err != nil {
		return err
	}
	defer sess.mu.Unlock()
	if err := c.txns.charge(ctx, c.stopC, sess, 1, len(key)+len(w.value)); err != nil {
		return err
	}
	sess.writes[string(key)] = w
	return nil
}

// CommitResult is a committed transaction's answer.
type CommitResult struct {
	Revision int64
	Puts     int64
	Deleted  int64
}

// Commit ends transaction id: it proposes the recorded reads and buffered
// writes as one entry, or fails with ErrTxnConflict when a read changed.
func (c *Core) Commit(ctx context.Context, id string) (CommitResult, error) {
	user, err := c.authenticated(ctx)
	if err != nil {
		return CommitResult{}, err
	}
	sess, err := c.txns.end(id, user)
	if err != nil {
		return CommitResult{}, err
	}
	defer sess.mu.Unlock()
	if len(sess.reads) == 0 && len(sess.ranges) == 0 && len(sess.writes) == 0 {
		c.txns.commits.Add(1)
		return CommitResult{Revision: c.store.Revision()}, nil
	}
	t := sess.txn()
	r, err := c.proposeTxn(ctx, t, sess.authRev.Load())
	if err == nil && r.Txn != nil && r.Txn.Conflict != nil {
		c.txns.aborts.Add(1)
		err = &conflictError{txnID: sess.id, conflict: r.Txn.Conflict}
	}
	if err != nil {
		return CommitResult{}, err
	}
	c.txns.commits.Add(1)
	out := CommitResult{Revision: r.Res.Revision}
	for i, o := range r.Res.Ops {
		if t.Success[i].Type == engine.OpPut {
			out.Puts++
		}
		out.Deleted += o.Deleted
	}
	return out, nil
}

// Rollback discards transaction id.
func (c *Core) Rollback(ctx context.Context, id string) error {
	user, err := c.authenticated(ctx)
	if err != nil {
		return err
	}
	sess, err := c.txns.end(id, user)
	if err != nil {
		return err
	}
	sess.mu.Unlock()
	return nil
}

// txn builds the commit entry: every recorded read and range, and the
// buffered writes in key order. Callers hold s.mu.
func (s *txnSession) txn() *engine.Txn {
	// The reads hid keys past their deadline; the checks and the writes
	// see them so too, by this node's clock, logged with the commit.
	t := &engine.Txn{
		Reads:   make([]engine.ReadCheck, 0, len(s.reads)),
		Ranges:  slices.Clone(s.ranges),
		Success: make([]engine.Op, 0, len(s.writes)),
		Now:     nowMillis(),
	}
	for k, mod := range s.reads {
		t.Reads = append(t.Reads, engine.ReadCheck{Key: []byte(k), ModRevision: mod})
	}
	slices.SortFunc(t.Reads, func(a, b engine.ReadCheck) int { return bytes.Compare(a.Key, b.Key) })
	for k, w := range s.writes {
		op := engine.Op{Type: engine.OpPut, Key: []byte(k), Value: w.value, Deadline: w.deadline, Lease: w.lease}
		if w.deleted {
			op = engine.Op{Type: engine.OpDelete, Key: []byte(k)}
		}
		t.Success = append(t.Success, op)
	}
	slices.SortFunc(t.Success, func(a, b engine.Op) int { return bytes.Compare(a.Key, b.Key) })
	return t
}

// proposeTxn admits a transaction against MaxMemory and proposes it as its
// own entry, carrying the auth revision its permissions were checked at.
func (c *Core) proposeTxn(ctx context.Context, t *engine.Txn, authRev uint64) (fsmResult, error) {
	data, err := command.EncodeTxn(t)
	if err != nil {
		return fsmResult{}, err
	}
	data = command.StampAuthRevision(data, authRev)
	ctx, cancel := c.requestContext(ctx)
	defer cancel()
	held, err := c.mem.admit(ctx, c.stopC, txnGrowth(t))
	if err != nil {
		return fsmResult{}, err
	}
	defer c.mem.release(held)
	return c.proposeAlone(ctx, data)
}

// checkableRange turns validated range bounds into the non-empty [key, end)
// a RangeCheck needs: a single key becomes [key, key+"\x00"), and the empty
// start of a whole-keyspace scan becomes "\x00", the smallest key there is.
func checkableRange(key, end []byte) ([]byte, []byte) {
	if len(end) == 0 {
		return key, keyAfter(key)
	}
	if len(key) == 0 {
		return []byte{0}, end
	}
	return key, end
}

// SetTxnClock replaces the clock transactions expire by; tests use it to
// expire sessions without sleeping.
func (c *Core) SetTxnClock(now func() time.Time) {
	c.txns.mu.Lock()
	c.txns.now = now
	c.txns.mu.Unlock()
}

// SweepTxns expires idle transactions now, as the periodic sweeper does.
func (c *Core) SweepTxns() { c.txns.sweep() }
