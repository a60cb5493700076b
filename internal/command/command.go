// Package command is the codec of the raft log's entries: every way a
// write is encoded before it is proposed, and the one decoder the state
// machine uses to turn an entry back into engine operations. Encoding and
// decoding live side by side so the two cannot drift.
//
// An entry holds one raftv1.Command: a put, a delete, a batch, a
// transaction, an eviction, an auth change, or a multi (several independent commands
// coalesced into one entry, each applied at its own revision). The hot
// shapes (a put, a multi of puts) are encoded and decoded with protowire
// directly, producing exactly the bytes proto.Marshal would; everything else
// goes through the generated messages.
//
// Decoding validates the operations it returns (engine.ValidateOp; a
// transaction is validated by engine.ApplyTxn), so a malformed entry is
// refused identically on every replica and never reaches the engine. Errors
// of that kind match ErrInvalid.
package command

import (
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	"github.com/kvdb/kvdb/internal/engine"
)

// ErrInvalid matches every error of a command that does not decode or
// validate.
var ErrInvalid = errors.New("command: invalid")

// invalidError is an invalid command; its text is what a client reads, so it
// carries no package prefix.
type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// Field numbers of raftv1.Command, raftv1.MultiCommand, PutCommand,
// DeleteCommand, BatchCommand and BatchCommandOp, for the hand-written fast
// paths.
const (
	commandPutField     = 1
	commandDeleteField  = 2
	commandBatchField   = 3
	commandMultiField   = 5
	multiCommandsField  = 1
	putKeyField         = 1
	putValueField       = 2
	putPrevKVField      = 3
	deleteKeyField      = 1
	deleteRangeEndField = 2
	deletePrevKVField   = 3
	batchOpsField       = 1
	batchNowField       = 2
	batchOpDeleteField  = 1
	batchOpKeyField     = 2
	batchOpValueField   = 3
	batchOpPrevKVField  = 4
	commandExpireField  = 13
	expireKeysField     = 1
	evictKeyKeyField    = 1
	evictKeyModField    = 2
)

// BatchOp is one operation of a batch.
type BatchOp struct {
	Delete     bool
	Key, Value []byte
	// PrevKV asks a delete for the key-value it removed.
	PrevKV bool
}

// EncodePut returns the bytes of Command{put: PutCommand{key, value,
// prev_kv}} as proto.Marshal produces them, without building the messages.
func EncodePut(key, value []byte, prevKV bool) []byte {
	inner := protowire.SizeTag(putKeyField) + protowire.SizeBytes(len(key))
	if len(value) > 0 {
		inner += protowire.SizeTag(putValueField) + protowire.SizeBytes(len(value))
	}
	if prevKV {
		inner += protowire.SizeTag(putPrevKVField) + 1
	}
	buf := make([]byte, 0, protowire.SizeTag(commandPutField)+protowire.SizeBytes(inner))
	buf = protowire.AppendTag(buf, commandPutField, protowire.BytesType)
	buf = protowire.AppendVarint(buf, uint64(inner))
	buf = protowire.AppendTag(buf, putKeyField, protowire.BytesType)
	buf = protowire.AppendBytes(buf, key)
	if len(value) > 0 {
		buf = protowire.AppendTag(buf, putValueField, protowire.BytesType)
		buf = protowire.AppendBytes(buf, value)
	}
	if prevKV {
		buf = protowire.AppendTag(buf, putPrevKVField, protowire.VarintType)
		buf = protowire.AppendVarint(buf, 1)
	}
	return buf
}

// EncodePutMeta encodes a put whose key expires at deadline (unix ms) or
// is attached to lease, prepared at now (unix ms, 0: not given; see
// PutCommand.now_ms); zero for all three is EncodePut.
func EncodePutMeta(key, value []byte, prevKV bool, deadline, lease, now int64) []byte {
	if deadline == 0 && lease == 0 && now == 0 {
		return EncodePut(key, value, prevKV)
	}
	b, err := marshal(&raftv1.Command{Op: &raftv1.Command_Put{Put: &raftv1.PutCommand{
		Key: key, Value: value, PrevKv: prevKV, DeadlineMs: deadline, Lease: lease, NowMs: now}}})
	if err != nil {
		panic(err) // a generated message always encodes
	}
	return b
}

// EncodeExpire encodes the expiry of keys still at the given revisions:
// the bytes proto.Marshal produces for Command{expire: ExpireCommand{keys}},
// written directly (the leader proposes one of these per 2,048 due keys).
func EncodeExpire(keys []engine.EvictKey) ([]byte, error) {
	item := func(k engine.EvictKey) int {
		n := protowire.SizeTag(evictKeyKeyField) + protowire.SizeBytes(len(k.Key))
		if k.ModRevision != 0 {
			n += protowire.SizeTag(evictKeyModField) + protowire.SizeVarint(uint64(k.ModRevision))
		}
		return n
	}
	inner := 0
	for _, k := range keys {
		inner += protowire.SizeTag(expireKeysField) + protowire.SizeBytes(item(k))
	}
	buf := make([]byte, 0, protowire.SizeTag(commandExpireField)+protowire.SizeBytes(inner))
	buf = protowire.AppendTag(buf, commandExpireField, protowire.BytesType)
	buf = protowire.AppendVarint(buf, uint64(inner))
	for _, k := range keys {
		buf = protowire.AppendTag(buf, expireKeysField, protowire.BytesType)
		buf = protowire.AppendVarint(buf, uint64(item(k)))
		buf = protowire.AppendTag(buf, evictKeyKeyField, protowire.BytesType)
		buf = protowire.AppendBytes(buf, k.Key)
		if k.ModRevision != 0 {
			buf = protowire.AppendTag(buf, evictKeyModField, protowire.VarintType)
			buf = protowire.AppendVarint(buf, uint64(k.ModRevision))
		}
	}
	return buf, nil
}

// EncodeLeaseGrant encodes the creation of lease id with ttl seconds.
func EncodeLeaseGrant(id, ttl int64) ([]byte, error) {
	return marshal(&raftv1.Command{Op: &raftv1.Command_LeaseGrant{LeaseGrant: &raftv1.LeaseGrantCommand{Id: id, Ttl: ttl}}})
}

// EncodeLeaseRevoke encodes the revocation of lease id; expired says its
// time ran out.
func EncodeLeaseRevoke(id int64, expired bool) ([]byte, error) {
	return marshal(&raftv1.Command{Op: &raftv1.Command_LeaseRevoke{LeaseRevoke: &raftv1.LeaseRevokeCommand{Id: id, Expired: expired}}})
}

// EncodeDelete encodes the delete of key, or of [key, end) when end is set.
func EncodeDelete(key, end []byte, prevKV bool, now int64) ([]byte, error) {
	return marshal(&raftv1.Command{Op: &raftv1.Command_Delete{Delete: &raftv1.DeleteCommand{Key: key, RangeEnd: end, PrevKv: prevKV, NowMs: now}}})
}

// EncodeBatch encodes a batch applied atomically at one revision, prepared
// at now (unix ms, 0: not given; see BatchCommand.now_ms).
func EncodeBatch(ops []BatchOp, now int64) ([]byte, error) {
	// Hand-encoded like EncodePut, byte for byte what proto.Marshal of the
	// generated BatchCommand gives (proto3: false and empty fields are
	// left out), without a message per op and the copy through it.
	item := func(o *BatchOp) int {
		n := 0
		if o.Delete {
			n += protowire.SizeTag(batchOpDeleteField) + 1
		}
		if len(o.Key) > 0 {
			n += protowire.SizeTag(batchOpKeyField) + protowire.SizeBytes(len(o.Key))
		}
		if !o.Delete && len(o.Value) > 0 {
			n += protowire.SizeTag(batchOpValueField) + protowire.SizeBytes(len(o.Value))
		}
		if o.Delete && o.PrevKV {
			n += protowire.SizeTag(batchOpPrevKVField) + 1
		}
		return n
	}
	inner := 0
	for i := range ops {
		inner += protowire.SizeTag(batchOpsField) + protowire.SizeBytes(item(&ops[i]))
	}
	if now != 0 {
		inner += protowire.SizeTag(batchNowField) + protowire.SizeVarint(uint64(now))
	}
	buf := make([]byte, 0, protowire.SizeTag(commandBatchField)+protowire.SizeBytes(inner))
	buf = protowire.AppendTag(buf, commandBatchField, protowire.BytesType)
	buf = protowire.AppendVarint(buf, uint64(inner))
	for i := range ops {
		o := &ops[i]
		buf = protowire.AppendTag(buf, batchOpsField, protowire.BytesType)
		buf = protowire.AppendVarint(buf, uint64(item(o)))
		if o.Delete {
			buf = protowire.AppendTag(buf, batchOpDeleteField, protowire.VarintType)
			buf = protowire.AppendVarint(buf, 1)
		}
		if len(o.Key) > 0 {
			buf = protowire.AppendTag(buf, batchOpKeyField, protowire.BytesType)
			buf = protowire.AppendBytes(buf, o.Key)
		}
		if !o.Delete && len(o.Value) > 0 {
			buf = protowire.AppendTag(buf, batchOpValueField, protowire.BytesType)
			buf = protowire.AppendBytes(buf, o.Value)
		}
		if o.Delete && o.PrevKV {
			buf = protowire.AppendTag(buf, batchOpPrevKVField, protowire.VarintType)
			buf = protowire.AppendVarint(buf, 1)
		}
	}
	if now != 0 {
		buf = protowire.AppendTag(buf, batchNowField, protowire.VarintType)
		buf = protowire.AppendVarint(buf, uint64(now))
	}
	return buf, nil
}

// EncodeTxn encodes a transaction: checks and compares, and two branches.
func EncodeTxn(t *engine.Txn) ([]byte, error) {
	c := &raftv1.TxnCommand{
		Reads:    make([]*raftv1.ReadCheck, len(t.Reads)),
		Ranges:   make([]*raftv1.RangeCheck, len(t.Ranges)),
		Compares: make([]*raftv1.TxnCompare, len(t.Compares)),
		Success:  encodeTxnOps(t.Success),
		Failure:  encodeTxnOps(t.Failure),
		NowMs:    t.Now,
	}
	for i, r := range t.Reads {
		c.Reads[i] = &raftv1.ReadCheck{Key: r.Key, ModRevision: r.ModRevision}
	}
	for i, r := range t.Ranges {
		c.Ranges[i] = &raftv1.RangeCheck{Key: r.Key, RangeEnd: r.End, Count: r.Count, MaxModRevision: r.MaxModRevision}
	}
	for i, cmp := range t.Compares {
		c.Compares[i] = &raftv1.TxnCompare{Key: cmp.Key, Target: targetsOut[cmp.Target], Operator: operatorsOut[cmp.Op],
			Value: cmp.Value, Number: cmp.Number}
	}
	return marshal(&raftv1.Command{Op: &raftv1.Command_Txn{Txn: c}})
}

func encodeTxnOps(ops []engine.Op) []*raftv1.TxnOp {
	out := make([]*raftv1.TxnOp, len(ops))
	for i, o := range ops {
		t := &raftv1.TxnOp{Key: o.Key, PrevKv: o.PrevKV}
		switch o.Type {
		case engine.OpPut:
			t.Type, t.Value, t.DeadlineMs, t.Lease = raftv1.TxnOpType_TXN_OP_TYPE_PUT, o.Value, o.Deadline, o.Lease
		case engine.OpDelete:
			t.Type = raftv1.TxnOpType_TXN_OP_TYPE_DELETE
		case engine.OpDeleteRange:
			t.Type, t.RangeEnd = raftv1.TxnOpType_TXN_OP_TYPE_DELETE, o.End
		case engine.OpRange:
			t.Type, t.RangeEnd = raftv1.TxnOpType_TXN_OP_TYPE_RANGE, o.End
			t.Limit, t.KeysOnly, t.CountOnly = int64(o.Range.Limit), o.Range.KeysOnly, o.Range.CountOnly
		}
		out[i] = t
	}
	return out
}

// EncodeEvict encodes the eviction of keys still at the given revisions.
func EncodeEvict(keys []engine.EvictKey) ([]byte, error) {
	cmd := &raftv1.EvictCommand{Keys: make([]*raftv1.EvictKey, len(keys))}
	for i, k := range keys {
		cmd.Keys[i] = &raftv1.EvictKey{Key: k.Key, ModRevision: k.ModRevision}
	}
	return marshal(&raftv1.Command{Op: &raftv1.Command_Evict{Evict: cmd}})
}

// EncodeAuth encodes a change of the users, roles or auth settings.
func EncodeAuth(c *raftv1.AuthCommand) ([]byte, error) {
	return marshal(&raftv1.Command{Op: &raftv1.Command_Auth{Auth: c}})
}

// EncodeMulti builds Command{multi: MultiCommand{commands}} around already
// encoded commands (none of them a multi), the same bytes proto.Marshal
// would produce, without decoding them again.
func EncodeMulti[T any](items []T, data func(T) []byte) []byte {
	return AppendMulti(nil, items, data)
}

// AppendMulti is EncodeMulti appending to dst (which it grows once, to
// the exact size).
func AppendMulti[T any](dst []byte, items []T, data func(T) []byte) []byte {
	inner := 0
	for _, it := range items {
		inner += protowire.SizeTag(multiCommandsField) + protowire.SizeBytes(len(data(it)))
	}
	buf := slices.Grow(dst, protowire.SizeTag(commandMultiField)+protowire.SizeBytes(inner))
	buf = protowire.AppendTag(buf, commandMultiField, protowire.BytesType)
	buf = protowire.AppendVarint(buf, uint64(inner))
	for _, it := range items {
		buf = protowire.AppendTag(buf, multiCommandsField, protowire.BytesType)
		buf = protowire.AppendBytes(buf, data(it))
	}
	return buf
}

func marshal(cmd *raftv1.Command) ([]byte, error) {
	b, err := proto.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("command: encode: %w", err)
	}
	return b, nil
}

var (
	targetsOut = map[engine.CompareTarget]raftv1.TxnCompareTarget{
		engine.CompareValue:   raftv1.TxnCompareTarget_TXN_COMPARE_TARGET_VALUE,
		engine.CompareVersion: raftv1.TxnCompareTarget_TXN_COMPARE_TARGET_VERSION,
		engine.CompareCreate:  raftv1.TxnCompareTarget_TXN_COMPARE_TARGET_CREATE,
		engine.CompareMod:     raftv1.TxnCompareTarget_TXN_COMPARE_TARGET_MOD,
	}
	operatorsOut = map[engine.CompareOp]raftv1.TxnCompareOperator{
		engine.CompareEqual:    raftv1.TxnCompareOperator_TXN_COMPARE_OPERATOR_EQUAL,
		engine.CompareNotEqual: raftv1.TxnCompareOperator_TXN_COMPARE_OPERATOR_NOT_EQUAL,
		engine.CompareGreater:  raftv1.TxnCompareOperator_TXN_COMPARE_OPERATOR_GREATER,
		engine.CompareLess:     raftv1.TxnCompareOperator_TXN_COMPARE_OPERATOR_LESS,
	}
	targetsIn   = invert(targetsOut)
	operatorsIn = invert(operatorsOut)
)

func invert[K, V comparable](m map[K]V) map[V]K {
	out := make(map[V]K, len(m))
	for k, v := range m {
		out[v] = k
	}
	return out
}

// Invalid marks err, an error of the engine refusing a command, as an
// invalid command (matching ErrInvalid) with the same text.
func Invalid(err error) error {
	if err == nil {
		return nil
	}
	return &invalidError{msg: err.Error()}
}
