package service

import (
	"bytes"
	"context"
	"slices"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/engine"
)

// txnService implements kvdbv1.TxnServiceServer on top of the node's
// txnManager. Reads are served from the local store after Begin confirmed
// the node is current (ReadIndex); their correctness does not rest on that,
// because Commit validates every read when its entry is applied.
type txnService struct {
	kvdbv1.UnimplementedTxnServiceServer
	s *Server
}

func (x *txnService) Begin(ctx context.Context, req *kvdbv1.BeginRequest) (*kvdbv1.BeginResponse, error) {
	if err := validTxnID(req.GetTxnId()); err != nil {
		return nil, toStatus(err)
	}
	if err := x.s.waitRead(ctx, kvdbv1.Consistency_CONSISTENCY_LINEARIZABLE); err != nil {
		return nil, toStatus(err)
	}
	rev := x.s.store.Revision()
	sess, err := x.s.txns.begin(req.GetTxnId(), rev)
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.BeginResponse{Header: x.s.header(rev), TxnId: sess.id, StartRevision: rev}, nil
}

func (x *txnService) Get(ctx context.Context, req *kvdbv1.TxnServiceGetRequest) (*kvdbv1.TxnServiceGetResponse, error) {
	key := req.GetKey()
	if err := x.s.limits.checkKey(key); err != nil {
		return nil, toStatus(err)
	}
	sess, err := x.s.txns.use(req.GetTxnId())
	if err != nil {
		return nil, toStatus(err)
	}
	defer sess.mu.Unlock()
	if w, ok := sess.writes[string(key)]; ok {
		// The transaction's own write: its answer does not depend on the
		// store, so nothing is recorded.
		if w.deleted {
			return nil, toStatus(ErrKeyNotFound)
		}
		return &kvdbv1.TxnServiceGetResponse{Header: x.s.header(x.s.store.Revision()), Kv: &kvdbv1.KeyValue{Key: key, Value: w.value}}, nil
	}
	kv, found := x.s.store.Get(key)
	if err := sess.recordRead(&x.s.limits, key, kv.ModRevision); err != nil {
		return nil, toStatus(err)
	}
	if !found {
		return nil, toStatus(ErrKeyNotFound)
	}
	return &kvdbv1.TxnServiceGetResponse{Header: x.s.header(x.s.store.Revision()), Kv: toProtoKV(kv, false)}, nil
}

func (x *txnService) Range(ctx context.Context, req *kvdbv1.TxnServiceRangeRequest) (*kvdbv1.TxnServiceRangeResponse, error) {
	key, end, err := x.s.rangeBounds(req.GetKey(), req.GetRangeEnd(), req.GetPrefix())
	if err != nil {
		return nil, toStatus(err)
	}
	limit, err := x.s.rangeLimit(req.GetLimit())
	if err != nil {
		return nil, toStatus(err)
	}
	sess, err := x.s.txns.use(req.GetTxnId())
	if err != nil {
		return nil, toStatus(err)
	}
	defer sess.mu.Unlock()
	key, end = checkableRange(key, end)
	own := sess.bufferedIn(key, end)
	// Own deletes may hide store keys, so read enough to fill limit anyway.
	r := x.s.store.Range(key, end, engine.RangeOptions{Limit: limit + len(own)})
	checkEnd := end
	if r.More {
		// Only the part of the range actually read is validated.
		checkEnd = keyAfter(r.KVs[len(r.KVs)-1].Key)
		own = sess.bufferedIn(key, checkEnd)
	}
	if err := sess.charge(&x.s.limits, 1, len(key)+len(checkEnd)); err != nil {
		return nil, toStatus(err)
	}
	sess.ranges = append(sess.ranges, engine.RangeCheckOf(key, checkEnd, r.KVs))
	kvs := sess.mergeWrites(r.KVs, own)
	resp := &kvdbv1.TxnServiceRangeResponse{Header: x.s.header(r.Revision), More: r.More}
	if len(kvs) > limit {
		kvs, resp.More = kvs[:limit], true
	}
	resp.Kvs = make([]*kvdbv1.KeyValue, len(kvs))
	for i, kv := range kvs {
		resp.Kvs[i] = toProtoKV(kv, false)
	}
	return resp, nil
}

func (x *txnService) Put(ctx context.Context, req *kvdbv1.TxnServicePutRequest) (*kvdbv1.TxnServicePutResponse, error) {
	if err := x.s.limits.checkKey(req.GetKey()); err != nil {
		return nil, toStatus(err)
	}
	if err := x.s.limits.checkValue(req.GetValue()); err != nil {
		return nil, toStatus(err)
	}
	if err := x.bufferWrite(req.GetTxnId(), req.GetKey(), txnWrite{value: req.GetValue()}); err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.TxnServicePutResponse{Header: x.s.header(x.s.store.Revision())}, nil
}

func (x *txnService) Delete(ctx context.Context, req *kvdbv1.TxnServiceDeleteRequest) (*kvdbv1.TxnServiceDeleteResponse, error) {
	if err := x.s.limits.checkKey(req.GetKey()); err != nil {
		return nil, toStatus(err)
	}
	if err := x.bufferWrite(req.GetTxnId(), req.GetKey(), txnWrite{deleted: true}); err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.TxnServiceDeleteResponse{Header: x.s.header(x.s.store.Revision())}, nil
}

func (x *txnService) bufferWrite(id string, key []byte, w txnWrite) error {
	sess, err := x.s.txns.use(id)
	if err != nil {
		return err
	}
	defer sess.mu.Unlock()
	if err := sess.charge(&x.s.limits, 1, len(key)+len(w.value)); err != nil {
		return err
	}
	// gRPC unmarshals into fresh slices, so they can be kept as they are.
	sess.writes[string(key)] = w
	return nil
}

func (x *txnService) Commit(ctx context.Context, req *kvdbv1.CommitRequest) (*kvdbv1.CommitResponse, error) {
	sess, err := x.s.txns.end(req.GetTxnId())
	if err != nil {
		return nil, toStatus(err)
	}
	defer sess.mu.Unlock()
	if len(sess.reads) == 0 && len(sess.ranges) == 0 && len(sess.writes) == 0 {
		x.s.txns.commits.Add(1)
		return &kvdbv1.CommitResponse{Header: x.s.header(x.s.store.Revision())}, nil
	}
	cmd := sess.command()
	r, err := x.s.proposeApply(ctx, &raftv1.Command{Op: &raftv1.Command_Txn{Txn: cmd}})
	if err == nil && r.txn != nil && r.txn.Conflict != nil {
		x.s.txns.aborts.Add(1)
		err = &conflictError{txnID: sess.id, conflict: r.txn.Conflict}
	}
	if err != nil {
		return nil, toStatus(err)
	}
	x.s.txns.commits.Add(1)
	resp := &kvdbv1.CommitResponse{Header: x.s.header(r.res.Revision)}
	for i, o := range r.res.Ops {
		if cmd.GetSuccess()[i].GetType() == raftv1.TxnOpType_TXN_OP_TYPE_PUT {
			resp.Puts++
		}
		resp.Deleted += o.Deleted
	}
	return resp, nil
}

// command builds the commit entry: every recorded read and range, and the
// buffered writes in key order. Callers hold s.mu.
func (s *txnSession) command() *raftv1.TxnCommand {
	cmd := &raftv1.TxnCommand{
		Reads:   make([]*raftv1.ReadCheck, 0, len(s.reads)),
		Ranges:  make([]*raftv1.RangeCheck, len(s.ranges)),
		Success: make([]*raftv1.TxnOp, 0, len(s.writes)),
	}
	for k, mod := range s.reads {
		cmd.Reads = append(cmd.Reads, &raftv1.ReadCheck{Key: []byte(k), ModRevision: mod})
	}
	slices.SortFunc(cmd.Reads, func(a, b *raftv1.ReadCheck) int { return bytes.Compare(a.Key, b.Key) })
	for i, r := range s.ranges {
		cmd.Ranges[i] = &raftv1.RangeCheck{Key: r.Key, RangeEnd: r.End, Count: r.Count, MaxModRevision: r.MaxModRevision}
	}
	for k, w := range s.writes {
		op := &raftv1.TxnOp{Type: raftv1.TxnOpType_TXN_OP_TYPE_PUT, Key: []byte(k), Value: w.value}
		if w.deleted {
			op = &raftv1.TxnOp{Type: raftv1.TxnOpType_TXN_OP_TYPE_DELETE, Key: []byte(k)}
		}
		cmd.Success = append(cmd.Success, op)
	}
	slices.SortFunc(cmd.Success, func(a, b *raftv1.TxnOp) int { return bytes.Compare(a.Key, b.Key) })
	return cmd
}

func (x *txnService) Rollback(ctx context.Context, req *kvdbv1.RollbackRequest) (*kvdbv1.RollbackResponse, error) {
	sess, err := x.s.txns.end(req.GetTxnId())
	if err != nil {
		return nil, toStatus(err)
	}
	sess.mu.Unlock()
	return &kvdbv1.RollbackResponse{Header: x.s.header(x.s.store.Revision())}, nil
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
