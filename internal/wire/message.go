package wire

import (
	"encoding/binary"
	"fmt"
)

// BatchOpType is the kind of one BATCH or TXN operation.
type BatchOpType uint8

// Batch operation types.
const (
	BatchPut    BatchOpType = 1
	BatchDelete BatchOpType = 2
)

// BatchOp is one write of a BATCH or of a TXN branch.
type BatchOp struct {
	Type  BatchOpType
	Key   []byte
	Value []byte // puts only
}

// CompareTarget is what a TXN comparison reads from a key.
type CompareTarget uint8

// Compare targets.
const (
	TargetVersion CompareTarget = 1
	TargetCreate  CompareTarget = 2
	TargetMod     CompareTarget = 3
	TargetValue   CompareTarget = 4
)

// CompareResult is a TXN comparison operator.
type CompareResult uint8

// Compare operators.
const (
	CompareEqual    CompareResult = 0
	CompareNotEqual CompareResult = 1
	CompareLess     CompareResult = 2
	CompareGreater  CompareResult = 3
)

// Compare is one condition of a TXN: Target(Key) Result operand, the
// operand being Value for TargetValue and Operand otherwise.
type Compare struct {
	Key     []byte
	Target  CompareTarget
	Result  CompareResult
	Operand int64
	Value   []byte
}

// Request is any request frame, decoded. Which fields an opcode uses is
// listed in docs/protocol.md; the others stay zero.
type Request struct {
	Op    Opcode
	Flags uint8
	ID    uint64

	Key   []byte // GET, PUT, DELETE, RANGE; AUTH: the user name
	End   []byte // DELETE, RANGE: range end (exclusive)
	Value []byte // PUT; AUTH: the password
	Limit int64  // RANGE
	Ops   []BatchOp

	// TXN: Compares decide between Ops (all true) and Failure.
	Compares []Compare
	Failure  []BatchOp

	Payload []byte // PING
}

// KeyValue is a key with its value and revisions, as carried on the wire.
type KeyValue struct {
	Key, Value                           []byte
	CreateRevision, ModRevision, Version int64
}

// Response is any response frame, decoded. When Status is not OK only
// Payload is set: the error message.
type Response struct {
	Op     Opcode
	Flags  uint8
	Status Status
	ID     uint64

	Revision  int64
	KV        KeyValue   // GET; PUT's previous value when Flags has FlagHasPrevKV
	KVs       []KeyValue // RANGE results; DELETE's previous values
	Count     int64      // RANGE
	More      bool       // RANGE
	Deleted   int64      // DELETE, BATCH
	Puts      int64      // BATCH
	Succeeded bool       // TXN
	TxnID     uint64     // BEGIN
	Payload   []byte     // PING echo, STATS JSON, or the error message
}

// Minimum encoded sizes, used to bound counts before allocating.
const (
	minBatchOpSize = 1 + 4       // type, key length (delete, empty key)
	minCompareSize = 4 + 2 + 4   // key length, target, result, value length
	kvFixedSize    = 4 + 4 + 3*8 // key length, value length, three revisions
)

func appendBytes(dst, b []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}

func appendInt64(dst []byte, v int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(v))
}

func appendOps(dst []byte, ops []BatchOp) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(ops)))
	for _, op := range ops {
		dst = append(dst, byte(op.Type))
		dst = appendBytes(dst, op.Key)
		if op.Type == BatchPut {
			dst = appendBytes(dst, op.Value)
		}
	}
	return dst
}

// AppendKeyValue appends the encoding of one key-value.
func AppendKeyValue(dst []byte, kv *KeyValue) []byte {
	dst = appendBytes(dst, kv.Key)
	dst = appendBytes(dst, kv.Value)
	dst = appendInt64(dst, kv.CreateRevision)
	dst = appendInt64(dst, kv.ModRevision)
	return appendInt64(dst, kv.Version)
}

// AppendRequest appends req as one frame.
func AppendRequest(dst []byte, req *Request) []byte {
	start := len(dst)
	dst = beginFrame(dst, req.Op, req.Flags, StatusOK, req.ID)
	switch req.Op {
	case OpPing:
		dst = append(dst, req.Payload...)
	case OpGet:
		dst = append(dst, req.Key...)
	case OpPut, OpAuth:
		dst = appendBytes(dst, req.Key)
		dst = append(dst, req.Value...)
	case OpDelete:
		dst = appendBytes(dst, req.Key)
		dst = append(dst, req.End...)
	case OpRange:
		dst = appendBytes(dst, req.Key)
		dst = appendBytes(dst, req.End)
		dst = appendInt64(dst, req.Limit)
	case OpBatch:
		dst = appendOps(dst, req.Ops)
	case OpTxn:
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(req.Compares)))
		for _, c := range req.Compares {
			dst = appendBytes(dst, c.Key)
			dst = append(dst, byte(c.Target), byte(c.Result))
			if c.Target == TargetValue {
				dst = appendBytes(dst, c.Value)
			} else {
				dst = appendInt64(dst, c.Operand)
			}
		}
		dst = appendOps(dst, req.Ops)
		dst = appendOps(dst, req.Failure)
	}
	return finishFrame(dst, start)
}

// AppendGet appends a GET request frame; the hot path of clients.
func AppendGet(dst []byte, id uint64, flags uint8, key []byte) []byte {
	dst = appendHeader(dst, OpGet, flags, StatusOK, id, len(key))
	return append(dst, key...)
}

// AppendPut appends a PUT request frame.
func AppendPut(dst []byte, id uint64, flags uint8, key, value []byte) []byte {
	dst = appendHeader(dst, OpPut, flags, StatusOK, id, 4+len(key)+len(value))
	dst = appendBytes(dst, key)
	return append(dst, value...)
}

// AppendResponse appends resp as one frame.
func AppendResponse(dst []byte, resp *Response) []byte {
	start := len(dst)
	dst = beginFrame(dst, resp.Op, resp.Flags, resp.Status, resp.ID)
	if resp.Status != StatusOK {
		dst = append(dst, resp.Payload...)
		return finishFrame(dst, start)
	}
	switch resp.Op {
	case OpPing, OpStats, OpError:
		dst = append(dst, resp.Payload...)
	case OpGet:
		dst = appendInt64(dst, resp.Revision)
		dst = AppendKeyValue(dst, &resp.KV)
	case OpPut:
		dst = appendInt64(dst, resp.Revision)
		if resp.Flags&FlagHasPrevKV != 0 {
			dst = AppendKeyValue(dst, &resp.KV)
		}
	case OpDelete:
		dst = appendInt64(dst, resp.Revision)
		dst = appendInt64(dst, resp.Deleted)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(resp.KVs)))
		for i := range resp.KVs {
			dst = AppendKeyValue(dst, &resp.KVs[i])
		}
	case OpRange:
		dst = appendInt64(dst, resp.Revision)
		dst = appendInt64(dst, resp.Count)
		dst = append(dst, boolByte(resp.More))
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(resp.KVs)))
		for i := range resp.KVs {
			dst = AppendKeyValue(dst, &resp.KVs[i])
		}
	case OpBatch:
		dst = appendInt64(dst, resp.Revision)
		dst = appendInt64(dst, resp.Puts)
		dst = appendInt64(dst, resp.Deleted)
	case OpBegin:
		dst = binary.BigEndian.AppendUint64(dst, resp.TxnID)
	case OpCommit:
		dst = appendInt64(dst, resp.Revision)
	case OpTxn:
		dst = appendInt64(dst, resp.Revision)
		dst = append(dst, boolByte(resp.Succeeded))
	}
	return finishFrame(dst, start)
}

// AppendError appends an error response: status st and message msg.
func AppendError(dst []byte, op Opcode, id uint64, st Status, msg string) []byte {
	dst = appendHeader(dst, op, 0, st, id, len(msg))
	return append(dst, msg...)
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// decoder reads a body front to back; every length is checked against the
// bytes that remain before it is used.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) u8() uint8 {
	if d.err != nil || len(d.b) < 1 {
		d.fail(ErrTruncated)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) u32() uint32 {
	if d.err != nil || len(d.b) < 4 {
		d.fail(ErrTruncated)
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) u64() uint64 {
	if d.err != nil || len(d.b) < 8 {
		d.fail(ErrTruncated)
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.u32()
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(d.b)) {
		d.fail(ErrTruncated)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) rest() []byte {
	v := d.b
	d.b = nil
	return v
}

// count reads a u32 count of items each at least minSize bytes long and
// rejects counts the remaining bytes cannot hold.
func (d *decoder) count(minSize int) int {
	n := d.u32()
	if d.err != nil {
		return 0
	}
	if uint64(n)*uint64(minSize) > uint64(len(d.b)) {
		d.fail(ErrTruncated)
		return 0
	}
	return int(n)
}

func (d *decoder) ops(dst []BatchOp) []BatchOp {
	n := d.count(minBatchOpSize)
	dst = dst[:0]
	for i := 0; i < n && d.err == nil; i++ {
		t := BatchOpType(d.u8())
		op := BatchOp{Type: t, Key: d.bytes()}
		switch t {
		case BatchPut:
			op.Value = d.bytes()
		case BatchDelete:
		default:
			d.fail(fmt.Errorf("%w: %d", ErrBadBatchOpType, t))
		}
		dst = append(dst, op)
	}
	return dst
}

func (d *decoder) kv() KeyValue {
	return KeyValue{Key: d.bytes(), Value: d.bytes(), CreateRevision: int64(d.u64()), ModRevision: int64(d.u64()), Version: int64(d.u64())}
}

func (d *decoder) kvs(dst []KeyValue) []KeyValue {
	n := d.count(kvFixedSize)
	dst = dst[:0]
	for i := 0; i < n && d.err == nil; i++ {
		dst = append(dst, d.kv())
	}
	return dst
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) > 0 {
		d.err = ErrTrailingBytes
	}
	return d.err
}

// DecodeRequest decodes f into req, reusing req's slices. The result aliases
// f.Body. An error means the frame is malformed.
func DecodeRequest(f Frame, req *Request) error {
	ops, cmps, fail := req.Ops[:0], req.Compares[:0], req.Failure[:0]
	*req = Request{Op: f.Op, Flags: f.Flags, ID: f.ID}
	if f.Status != StatusOK {
		return ErrRequestStatus
	}
	d := decoder{b: f.Body}
	switch f.Op {
	case OpPing:
		req.Payload = d.rest()
	case OpGet:
		req.Key = d.rest()
	case OpPut, OpAuth:
		req.Key = d.bytes()
		req.Value = d.rest()
	case OpDelete:
		req.Key = d.bytes()
		req.End = d.rest()
	case OpRange:
		req.Key = d.bytes()
		req.End = d.bytes()
		req.Limit = int64(d.u64())
	case OpBatch:
		req.Ops = d.ops(ops)
	case OpBegin, OpCommit, OpRollback, OpStats:
	case OpTxn:
		n := d.count(minCompareSize)
		for i := 0; i < n && d.err == nil; i++ {
			c := Compare{Key: d.bytes(), Target: CompareTarget(d.u8()), Result: CompareResult(d.u8())}
			switch c.Target {
			case TargetValue:
				c.Value = d.bytes()
			case TargetVersion, TargetCreate, TargetMod:
				c.Operand = int64(d.u64())
			default:
				d.fail(fmt.Errorf("wire: unknown compare target %d", c.Target))
			}
			if c.Result > CompareGreater {
				d.fail(fmt.Errorf("wire: unknown compare result %d", c.Result))
			}
			cmps = append(cmps, c)
		}
		req.Compares = cmps
		req.Ops = d.ops(ops)
		req.Failure = d.ops(fail)
	default:
		return fmt.Errorf("%w: 0x%02x", ErrUnknownOpcode, uint8(f.Op))
	}
	if req.Ops == nil {
		req.Ops = ops
	}
	if req.Compares == nil {
		req.Compares = cmps
	}
	if req.Failure == nil {
		req.Failure = fail
	}
	return d.end()
}

// DecodeResponse decodes f into resp, reusing resp.KVs. The result aliases
// f.Body.
func DecodeResponse(f Frame, resp *Response) error {
	kvs := resp.KVs[:0]
	*resp = Response{Op: f.Op, Flags: f.Flags, Status: f.Status, ID: f.ID, KVs: kvs}
	d := decoder{b: f.Body}
	if f.Status != StatusOK {
		resp.Payload = d.rest()
		return nil
	}
	switch f.Op {
	case OpPing, OpStats, OpError:
		resp.Payload = d.rest()
	case OpGet:
		resp.Revision = int64(d.u64())
		resp.KV = d.kv()
	case OpPut:
		resp.Revision = int64(d.u64())
		if f.Flags&FlagHasPrevKV != 0 {
			resp.KV = d.kv()
		}
	case OpDelete:
		resp.Revision = int64(d.u64())
		resp.Deleted = int64(d.u64())
		resp.KVs = d.kvs(kvs)
	case OpRange:
		resp.Revision = int64(d.u64())
		resp.Count = int64(d.u64())
		resp.More = d.u8() != 0
		resp.KVs = d.kvs(kvs)
	case OpBatch:
		resp.Revision = int64(d.u64())
		resp.Puts = int64(d.u64())
		resp.Deleted = int64(d.u64())
	case OpBegin:
		resp.TxnID = d.u64()
	case OpCommit:
		resp.Revision = int64(d.u64())
	case OpRollback, OpAuth:
	case OpTxn:
		resp.Revision = int64(d.u64())
		resp.Succeeded = d.u8() != 0
	default:
		return fmt.Errorf("%w: 0x%02x", ErrUnknownOpcode, uint8(f.Op))
	}
	return d.end()
}
