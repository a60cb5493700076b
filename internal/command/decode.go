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
	// KindExpire is the expiry of keys: Evict holds them.
	KindExpire
	// KindLeaseGrant creates lease Lease.ID with Lease.TTL seconds.
	KindLeaseGrant
	// KindLeaseRevoke revokes lease Lease.ID (Lease.Expired: its time ran
	// out).
	KindLeaseRevoke
)

// Lease is a lease grant's or revoke's content.
type Lease struct {
	ID, TTL int64
	Expired bool
}

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
	Lease  Lease
	// RMWs holds, for a multi with read-modify-writes, RMWs[i] for each
	// command i that is one (its Groups[i] is nil); nil when there are none.
	RMWs []*RMW
	// Errs holds, for a multi, the error of each command that did not
	// decode or validate (nil entries for the others).
	Errs []error
	// AuthRevision is the auth revision the command's permissions were
	// checked against (0: none); for a multi, AuthRevisions[i] is command
	// i's, and AuthRevisions is nil when no command carries one.
	AuthRevision  uint64
	AuthRevisions []uint64
}

// Decoder decodes entries, reusing its buffers between calls: the Decoded
// it returns is valid until the next call. Not safe for concurrent use; the
// apply loop owns one.
type Decoder struct {
	ops    []engine.Op
	bounds [][2]int
	groups [][]engine.Op
	errs   []error
	revs   []uint64
}

// Decode reads one entry. An error (matching ErrInvalid) means the entry as
// a whole is refused; a multi reports its commands' errors in Errs instead.
func (d *Decoder) Decode(data []byte) (Decoded, error) {
	if out, ok := d.decodeFast(data); ok {
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
	out, err := d.decodeMessage(&cmd)
	out.AuthRevision = cmd.GetAuthRevision()
	return out, err
}

// decodeMessage is decodeProto's work on the decoded message.
func (d *Decoder) decodeMessage(cmd *raftv1.Command) (Decoded, error) {
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
	case *raftv1.Command_Expire:
		keys := make([]engine.EvictKey, len(c.Expire.GetKeys()))
		for i, k := range c.Expire.GetKeys() {
			keys[i] = engine.EvictKey{Key: k.GetKey(), ModRevision: k.GetModRevision()}
		}
		return Decoded{Kind: KindExpire, Evict: keys}, nil
	case *raftv1.Command_LeaseGrant:
		g := c.LeaseGrant
		if g.GetId() == 0 || g.GetTtl() <= 0 {
			return Decoded{}, invalidf("lease grant needs an id and a positive ttl")
		}
		return Decoded{Kind: KindLeaseGrant, Lease: Lease{ID: g.GetId(), TTL: g.GetTtl()}}, nil
	case *raftv1.Command_LeaseRevoke:
		return Decoded{Kind: KindLeaseRevoke, Lease: Lease{ID: c.LeaseRevoke.GetId(), Expired: c.LeaseRevoke.GetExpired()}}, nil
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
		var revs []uint64
		for i, sub := range cmds {
			if r := sub.GetAuthRevision(); r != 0 {
				if revs == nil {
					revs = d.resetRevs(len(cmds))
				}
				revs[i] = r
			}
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
		return Decoded{Kind: KindMulti, Groups: groups, Errs: errs, RMWs: rmws, AuthRevisions: revs}, nil
	}
	ops, err := decodeOps(cmd, d.ops[:0])
	if err != nil {
		return Decoded{}, err
	}
	d.ops = ops
	return Decoded{Kind: KindOps, Ops: ops}, nil
}

// resetRevs returns n zeroed auth revisions in the decoder's buffer.
func (d *Decoder) resetRevs(n int) []uint64 {
	if cap(d.revs) < n {
		d.revs = make([]uint64, n)
	}
	d.revs = d.revs[:n]
	clear(d.revs)
	return d.revs
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
		ops = append(ops, engine.Op{Type: engine.OpPut, Key: c.Put.GetKey(), Value: c.Put.GetValue(), PrevKV: c.Put.GetPrevKv(),
			Deadline: c.Put.GetDeadlineMs(), Lease: c.Put.GetLease(), Now: max(c.Put.GetNowMs(), 0)})
		if c.Put.GetDeadlineMs() < 0 {
			return nil, invalidf("negative deadline")
		}
	case *raftv1.Command_Delete:
		d := c.Delete
		now := max(d.GetNowMs(), 0)
		if len(d.GetRangeEnd()) > 0 {
			ops = append(ops, engine.Op{Type: engine.OpDeleteRange, Key: d.GetKey(), End: d.GetRangeEnd(), PrevKV: d.GetPrevKv(), Now: now})
		} else {
			ops = append(ops, engine.Op{Type: engine.OpDelete, Key: d.GetKey(), PrevKV: d.GetPrevKv(), Now: now})
		}
	case *raftv1.Command_Batch:
		now := max(c.Batch.GetNowMs(), 0)
		for _, o := range c.Batch.GetOps() {
			if o.GetDelete() {
				ops = append(ops, engine.Op{Type: engine.OpDelete, Key: o.GetKey(), PrevKV: o.GetPrevKv(), Now: now})
			} else {
				ops = append(ops, engine.Op{Type: engine.OpPut, Key: o.GetKey(), Value: o.GetValue(), Now: now})
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

// decodeFast decodes the entries a write-heavy node's log is made of (a
// put, a delete, a batch, or a multi of those, as the coalescer proposes
// them) without building protobuf messages. Anything it does not recognise
// exactly (another command, an unknown or repeated field, an op that fails
// validation) returns ok=false and takes the generic path, so both paths
// decode the same bytes the same way and the generic one words the errors.
func (d *Decoder) decodeFast(data []byte) (Decoded, bool) {
	rev, data := splitAuthRevision(data)
	num, body, ok := oneField(data)
	if !ok {
		return Decoded{}, false
	}
	if num == commandMultiField {
		if rev != 0 {
			return Decoded{}, false // a multi's revisions are its commands'
		}
		return d.decodeFastMulti(body)
	}
	if num == commandExpireField {
		keys, ok := parseExpire(body)
		return Decoded{Kind: KindExpire, Evict: keys, AuthRevision: rev}, ok
	}
	ops, ok := parseWrite(num, body, d.ops[:0])
	if !ok {
		return Decoded{}, false
	}
	d.ops = ops
	for _, op := range ops {
		if engine.ValidateOp(op) != nil {
			return Decoded{}, false
		}
	}
	return Decoded{Kind: KindOps, Ops: ops, AuthRevision: rev}, true
}

// decodeFastMulti decodes a MultiCommand's body whose commands are all
// puts, deletes or batches.
func (d *Decoder) decodeFastMulti(inner []byte) (Decoded, bool) {
	ops := d.ops[:0]
	bounds := d.bounds[:0]
	revs := d.revs[:0]
	stamped := false
	for len(inner) > 0 {
		num, typ, n := protowire.ConsumeTag(inner)
		if n < 0 || num != multiCommandsField || typ != protowire.BytesType {
			return Decoded{}, false
		}
		sub, m := protowire.ConsumeBytes(inner[n:])
		if m < 0 {
			return Decoded{}, false
		}
		inner = inner[n+m:]
		rev, sub := splitAuthRevision(sub)
		revs = append(revs, rev)
		stamped = stamped || rev != 0
		cnum, body, ok := oneField(sub)
		if !ok {
			return Decoded{}, false
		}
		start := len(ops)
		if ops, ok = parseWrite(cnum, body, ops); !ok {
			return Decoded{}, false
		}
		bounds = append(bounds, [2]int{start, len(ops)})
	}
	d.ops, d.bounds, d.revs = ops, bounds, revs
	if !stamped {
		revs = nil
	}
	groups, errs := d.reset(len(bounds))
	for i, b := range bounds {
		if b[0] == b[1] {
			continue // an empty batch: nothing to apply, as on the generic path
		}
		g := ops[b[0]:b[1]:b[1]]
		for _, op := range g {
			if err := engine.ValidateOp(op); err != nil {
				errs[i] = invalidf("%v", err)
				g = nil
				break
			}
		}
		groups[i] = g
	}
	return Decoded{Kind: KindMulti, Groups: groups, Errs: errs, AuthRevisions: revs}, true
}

// oneField reads a message holding exactly one length-delimited field, as
// a Command with its oneof set is encoded.
func oneField(b []byte) (protowire.Number, []byte, bool) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || typ != protowire.BytesType {
		return 0, nil, false
	}
	body, m := protowire.ConsumeBytes(b[n:])
	if m < 0 || n+m != len(b) {
		return 0, nil, false
	}
	return num, body, true
}

// parseWrite appends the ops of a Command's put, delete or batch field.
// Keys and values alias b.
func parseWrite(num protowire.Number, b []byte, ops []engine.Op) ([]engine.Op, bool) {
	switch num {
	case commandPutField:
		op, ok := parsePut(b)
		return append(ops, op), ok
	case commandDeleteField:
		op, ok := parseDelete(b)
		return append(ops, op), ok
	case commandBatchField:
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 || num != batchOpsField || typ != protowire.BytesType {
				return ops, false
			}
			v, m := protowire.ConsumeBytes(b[n:])
			if m < 0 {
				return ops, false
			}
			op, ok := parseBatchOp(v)
			if !ok {
				return ops, false
			}
			ops = append(ops, op)
			b = b[n+m:]
		}
		return ops, true
	}
	return ops, false
}

// fields reads a message of fields numbered 1 to last (at most 4), each at
// most once: bytes fields into bs, varint fields (bools, 0 or 1) into vs.
// kinds says which wire type each field must have.
func fields(p []byte, last protowire.Number, kinds [5]protowire.Type) (bs [5][]byte, vs [5]bool, ok bool) {
	var seen [5]bool
	for len(p) > 0 {
		num, typ, n := protowire.ConsumeTag(p)
		if n < 0 || num < 1 || num > last || seen[num] || typ != kinds[num] {
			return bs, vs, false
		}
		seen[num] = true
		p = p[n:]
		switch typ {
		case protowire.BytesType:
			v, m := protowire.ConsumeBytes(p)
			if m < 0 {
				return bs, vs, false
			}
			bs[num], p = v, p[m:]
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(p)
			if m < 0 || v > 1 {
				return bs, vs, false
			}
			vs[num], p = v == 1, p[m:]
		}
	}
	return bs, vs, true
}

// parseExpire reads an ExpireCommand's keys (aliasing b); anything but
// keys of a key and a mod revision, each at most once, takes the generic
// path.
func parseExpire(b []byte) ([]engine.EvictKey, bool) {
	var keys []engine.EvictKey
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num != expireKeysField || typ != protowire.BytesType {
			return nil, false
		}
		item, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return nil, false
		}
		b = b[n+m:]
		var k engine.EvictKey
		var seenKey, seenMod bool
		for len(item) > 0 {
			num, typ, n := protowire.ConsumeTag(item)
			if n < 0 {
				return nil, false
			}
			item = item[n:]
			switch {
			case num == evictKeyKeyField && typ == protowire.BytesType && !seenKey:
				v, m := protowire.ConsumeBytes(item)
				if m < 0 {
					return nil, false
				}
				k.Key, item, seenKey = v, item[m:], true
			case num == evictKeyModField && typ == protowire.VarintType && !seenMod:
				v, m := protowire.ConsumeVarint(item)
				if m < 0 {
					return nil, false
				}
				k.ModRevision, item, seenMod = int64(v), item[m:], true
			default:
				return nil, false
			}
		}
		keys = append(keys, k)
	}
	return keys, true
}

// parsePut reads a PutCommand{key, value, prev_kv}.
func parsePut(b []byte) (engine.Op, bool) {
	bs, vs, ok := fields(b, 3, [5]protowire.Type{0, protowire.BytesType, protowire.BytesType, protowire.VarintType})
	return engine.Op{Type: engine.OpPut, Key: bs[putKeyField], Value: bs[putValueField], PrevKV: vs[putPrevKVField]}, ok
}

// parseDelete reads a DeleteCommand{key, range_end, prev_kv}.
func parseDelete(b []byte) (engine.Op, bool) {
	bs, vs, ok := fields(b, 3, [5]protowire.Type{0, protowire.BytesType, protowire.BytesType, protowire.VarintType})
	op := engine.Op{Type: engine.OpDelete, Key: bs[deleteKeyField], PrevKV: vs[deletePrevKVField]}
	if len(bs[deleteRangeEndField]) > 0 {
		op.Type, op.End = engine.OpDeleteRange, bs[deleteRangeEndField]
	}
	return op, ok
}

// parseBatchOp reads a BatchCommandOp{delete, key, value, prev_kv}.
func parseBatchOp(b []byte) (engine.Op, bool) {
	bs, vs, ok := fields(b, 4, [5]protowire.Type{0, protowire.VarintType, protowire.BytesType, protowire.BytesType, protowire.VarintType})
	if vs[batchOpDeleteField] {
		return engine.Op{Type: engine.OpDelete, Key: bs[batchOpKeyField], PrevKV: vs[batchOpPrevKVField]}, ok
	}
	return engine.Op{Type: engine.OpPut, Key: bs[batchOpKeyField], Value: bs[batchOpValueField]}, ok
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
		Now:      c.GetNowMs(),
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
			op.Type, op.End, op.Deadline, op.Lease = engine.OpPut, nil, max(o.GetDeadlineMs(), 0), max(o.GetLease(), 0)
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
