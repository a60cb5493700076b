package command

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	"github.com/kvdb/kvdb/internal/engine"
)

// Kind says what a decoded entry holds.
type Kind uint8

const (
	// KindOps is a put, delete or batch: Ops, applied at one revision.
	KindOps Kind = iota + 1
	// KindTxn is a transaction: Txn.
	KindTxn
	// KindEvict is an eviction: Evict.
	KindEvict
	// KindMulti is several independent commands: Groups[i] is the ops of
	// command i (nil when Errs[i] is set), each applied at its own revision.
	KindMulti
	// KindAuth is a change of the users, roles or auth settings: Auth.
	KindAuth
	// KindRMW is a read-modify-write of one key: RMW.
	KindRMW
)

// Decoded is one decoded entry. Keys and values alias the entry's bytes;
// the engine copies what it keeps.
type Decoded struct {
	Kind   Kind
	Ops    []engine.Op
	Txn    *engine.Txn
	Evict  []engine.EvictKey
	Groups [][]engine.Op
	Auth   *raftv1.AuthCommand
	RMW    *RMW
	// RMWs holds, for a multi with read-modify-writes, RMWs[i] for each
	// command i that is one (its Groups[i] is nil); nil when there are none.
	RMWs []*RMW
	// Errs holds, for a multi, the error of each command that did not
	// decode or validate (nil entries for the others).
	Errs []error
}

// Decoder decodes entries, reusing its buffers between calls: the Decoded
// it returns is valid until the next call. Not safe for concurrent use; the
// apply loop owns one.
type Decoder struct {
	ops    []engine.Op
	groups [][]engine.Op
	errs   []error
}

// Decode reads one entry. An error (matching ErrInvalid) means the entry as
// a whole is refused; a multi reports its commands' errors in Errs instead.
func (d *Decoder) Decode(data []byte) (Decoded, error) {
	if out, ok := d.decodeMultiPuts(data); ok {
		return out, nil
	}
	return d.decodeProto(data)
}

// decodeProto is Decode through the generated messages.
func (d *Decoder) decodeProto(data []byte) (Decoded, error) {
	var cmd raftv1.Command
	if err := proto.Unmarshal(data, &cmd); err != nil {
		return Decoded{}, invalidf("undecodable command: %v", err)
	}
	switch c := cmd.GetOp().(type) {
	case *raftv1.Command_Txn:
		// The engine validates a transaction as it applies it.
		return Decoded{Kind: KindTxn, Txn: decodeTxn(c.Txn)}, nil
	case *raftv1.Command_Evict:
		keys := make([]engine.EvictKey, len(c.Evict.GetKeys()))
		for i, k := range c.Evict.GetKeys() {
			keys[i] = engine.EvictKey{Key: k.GetKey(), ModRevision: k.GetModRevision()}
		}
		return Decoded{Kind: KindEvict, Evict: keys}, nil
	case *raftv1.Command_Auth:
		return Decoded{Kind: KindAuth, Auth: c.Auth}, nil
	case *raftv1.Command_Rmw:
		r, err := decodeRMW(c.Rmw)
		if err != nil {
			return Decoded{}, err
		}
		return Decoded{Kind: KindRMW, RMW: r}, nil
	case *raftv1.Command_Multi:
		cmds := c.Multi.GetCommands()
		groups, errs := d.reset(len(cmds))
		var rmws []*RMW
		for i, sub := range cmds {
			if _, nested := sub.GetOp().(*raftv1.Command_Multi); nested {
				errs[i] = invalidf("nested multi command")
				continue
			}
			if r, ok := sub.GetOp().(*raftv1.Command_Rmw); ok {
				if rmws == nil {
					rmws = make([]*RMW, len(cmds))
				}
				rmws[i], errs[i] = decodeRMW(r.Rmw)
				continue
			}
			groups[i], errs[i] = decodeOps(sub, nil)
		}
		return Decoded{Kind: KindMulti, Groups: groups, Errs: errs, RMWs: rmws}, nil
	}
	ops, err := decodeOps(&cmd, d.ops[:0])
	if err != nil {
		return Decoded{}, err
	}
	d.ops = ops
	return Decoded{Kind: KindOps, Ops: ops}, nil
}

func (d *Decoder) reset(n int) ([][]engine.Op, []error) {
	if cap(d.groups) < n {
		d.groups, d.errs = make([][]engine.Op, n), make([]error, n)
	}
	d.groups, d.errs = d.groups[:n], d.errs[:n]
	clear(d.groups)
	clear(d.errs)
	return d.groups, d.errs
}

// decodeOps converts a put, delete or batch command, appending to ops.
func decodeOps(cmd *raftv1.Command, ops []engine.Op) ([]engine.Op, error) {
	switch c := cmd.GetOp().(type) {
	case *raftv1.Command_Put:
		ops = append(ops, engine.Op{Type: engine.OpPut, Key: c.Put.GetKey(), Value: c.Put.GetValue(), PrevKV: c.Put.GetPrevKv()})
	case *raftv1.Command_Delete:
		d := c.Delete
		if len(d.GetRangeEnd()) > 0 {
			ops = append(ops, engine.Op{Type: engine.OpDeleteRange, Key: d.GetKey(), End: d.GetRangeEnd(), PrevKV: d.GetPrevKv()})
		} else {
			ops = append(ops, engine.Op{Type: engine.OpDelete, Key: d.GetKey(), PrevKV: d.GetPrevKv()})
		}
	case *raftv1.Command_Batch:
		for _, o := range c.Batch.GetOps() {
			if o.GetDelete() {
				ops = append(ops, engine.Op{Type: engine.OpDelete, Key: o.GetKey()})
			} else {
				ops = append(ops, engine.Op{Type: engine.OpPut, Key: o.GetKey(), Value: o.GetValue()})
			}
		}
	default:
		return nil, invalidf("command with no operation")
	}
	for _, op := range ops {
		if err := engine.ValidateOp(op); err != nil {
			return nil, invalidf("%v", err)
		}
	}
	return ops, nil
}

// decodeMultiPuts decodes a multi whose commands are all plain puts without
// building protobuf messages: on a write-heavy node this entry is most of
// the log. Anything it does not recognise exactly (another command, an
// unknown or repeated field) returns ok=false and takes the generic path,
// so both paths decode the same bytes the same way.
func (d *Decoder) decodeMultiPuts(data []byte) (Decoded, bool) {
	num, typ, n := protowire.ConsumeTag(data)
	if n < 0 || num != commandMultiField || typ != protowire.BytesType {
		return Decoded{}, false
	}
	inner, m := protowire.ConsumeBytes(data[n:])
	if m < 0 || n+m != len(data) {
		return Decoded{}, false
	}
	ops := d.ops[:0]
	for len(inner) > 0 {
		num, typ, n := protowire.ConsumeTag(inner)
		if n < 0 || num != multiCommandsField || typ != protowire.BytesType {
			return Decoded{}, false
		}
		sub, m := protowire.ConsumeBytes(inner[n:])
		if m < 0 {
			return Decoded{}, false
		}
		op, ok := parsePut(sub)
		if !ok {
			return Decoded{}, false
		}
		ops = append(ops, op)
		inner = inner[n+m:]
	}
	d.ops = ops
	groups, errs := d.reset(len(ops))
	for i := range ops {
		if err := engine.ValidateOp(ops[i]); err != nil {
			errs[i] = invalidf("%v", err)
			continue
		}
		groups[i] = ops[i : i+1 : i+1]
	}
	return Decoded{Kind: KindMulti, Groups: groups, Errs: errs}, true
}

// parsePut reads Command{put: PutCommand{key, value, prev_kv}} as EncodePut
// writes it. Key and value alias b.
func parsePut(b []byte) (engine.Op, bool) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != commandPutField || typ != protowire.BytesType {
		return engine.Op{}, false
	}
	p, m := protowire.ConsumeBytes(b[n:])
	if m < 0 || n+m != len(b) {
		return engine.Op{}, false
	}
	op := engine.Op{Type: engine.OpPut}
	var seen [4]bool
	for len(p) > 0 {
		num, typ, n := protowire.ConsumeTag(p)
		if n < 0 || num < 1 || num > 3 || seen[num] {
			return engine.Op{}, false
		}
		seen[num] = true
		p = p[n:]
		switch {
		case num == putKeyField && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(p)
			if m < 0 {
				return engine.Op{}, false
			}
			op.Key, p = v, p[m:]
		case num == putValueField && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(p)
			if m < 0 {
				return engine.Op{}, false
			}
			op.Value, p = v, p[m:]
		case num == putPrevKVField && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(p)
			if m < 0 || v > 1 {
				return engine.Op{}, false
			}
			op.PrevKV, p = v == 1, p[m:]
		default:
			return engine.Op{}, false
		}
	}
	return op, true
}

// decodeTxn converts the log form to the engine's. Unknown enum values map
// to zero values, which engine.ValidateTxn rejects, so a malformed entry is
// refused whole on every replica rather than half applied.
func decodeTxn(c *raftv1.TxnCommand) *engine.Txn {
	t := &engine.Txn{
		Reads:    make([]engine.ReadCheck, len(c.GetReads())),
		Ranges:   make([]engine.RangeCheck, len(c.GetRanges())),
		Compares: make([]engine.Compare, len(c.GetCompares())),
		Success:  decodeTxnOps(c.GetSuccess()),
		Failure:  decodeTxnOps(c.GetFailure()),
	}
	for i, r := range c.GetReads() {
		t.Reads[i] = engine.ReadCheck{Key: r.GetKey(), ModRevision: r.GetModRevision()}
	}
	for i, r := range c.GetRanges() {
		t.Ranges[i] = engine.RangeCheck{Key: r.GetKey(), End: r.GetRangeEnd(), Count: r.GetCount(), MaxModRevision: r.GetMaxModRevision()}
	}
	for i, cmp := range c.GetCompares() {
		t.Compares[i] = engine.Compare{
			Key:    cmp.GetKey(),
			Target: targetsIn[cmp.GetTarget()],
			Op:     operatorsIn[cmp.GetOperator()],
			Value:  cmp.GetValue(),
			Number: cmp.GetNumber(),
		}
	}
	return t
}

func decodeTxnOps(ops []*raftv1.TxnOp) []engine.Op {
	out := make([]engine.Op, len(ops))
	for i, o := range ops {
		op := engine.Op{Key: o.GetKey(), End: o.GetRangeEnd(), Value: o.GetValue(), PrevKV: o.GetPrevKv()}
		switch o.GetType() {
		case raftv1.TxnOpType_TXN_OP_TYPE_PUT:
			op.Type, op.End = engine.OpPut, nil
		case raftv1.TxnOpType_TXN_OP_TYPE_DELETE:
			op.Type = engine.OpDelete
			if len(op.End) > 0 {
				op.Type = engine.OpDeleteRange
			}
		case raftv1.TxnOpType_TXN_OP_TYPE_RANGE:
			op.Type = engine.OpRange
			op.Range = engine.RangeOptions{Limit: int(max(o.GetLimit(), 0)), KeysOnly: o.GetKeysOnly(), CountOnly: o.GetCountOnly()}
		}
		out[i] = op
	}
	return out
}
