package service

import (
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	"github.com/kvdb/kvdb/internal/engine"
	"github.com/kvdb/kvdb/internal/raftnode"
)

// fsm adapts the engine to raftnode.StateMachine: it decodes the command of
// each committed entry and applies it. Called only from the raft apply loop.
type fsm struct {
	store *engine.Store
	ops   []engine.Op // reused between entries; the engine copies what it keeps
	// fastOps is fastApplyMulti's reused buffer.
	fastOps []engine.Op
	// evicted, when set, is called after an eviction entry is applied.
	evicted func()
}

var _ raftnode.StateMachine = (*fsm)(nil)

// applyResult is what a proposer gets back from Propose.
type applyResult struct {
	res engine.Result
	err error
	// txn is set for a TxnCommand.
	txn *engine.TxnResult
}

func (f *fsm) Apply(index uint64, data []byte) any {
	if data == nil {
		f.store.MarkApplied(index)
		return nil
	}
	if res, ok := f.fastApplyMulti(index, data); ok {
		return res
	}
	var cmd raftv1.Command
	if err := proto.Unmarshal(data, &cmd); err != nil {
		// The entry passed the WAL's checksum, so it is what was proposed;
		// a command that does not decode is a bug in the proposer, not a
		// reason to stop the replica. Skip it deterministically.
		f.store.MarkApplied(index)
		return applyResult{err: fmt.Errorf("service: undecodable command at index %d: %w", index, err)}
	}
	if t, ok := cmd.GetOp().(*raftv1.Command_Txn); ok {
		return f.applyTxn(index, t.Txn)
	}
	if e, ok := cmd.GetOp().(*raftv1.Command_Evict); ok {
		return f.applyEvict(index, e.Evict)
	}
	if m, ok := cmd.GetOp().(*raftv1.Command_Multi); ok {
		return f.applyMulti(index, m.Multi.GetCommands())
	}
	ops, err := f.decode(&cmd)
	if err != nil {
		f.store.MarkApplied(index)
		return applyResult{err: err}
	}
	res, _ := f.store.Apply(index, ops)
	return applyResult{res: res}
}

// multiResult is the result of a MultiCommand entry: one applyResult per
// coalesced command, in order.
type multiResult []applyResult

// applyMulti applies each command of a MultiCommand at its own revision. A
// command that does not decode or validate gets its own error and an empty
// group, which changes nothing; the others are unaffected.
func (f *fsm) applyMulti(index uint64, cmds []*raftv1.Command) any {
	out := make(multiResult, len(cmds))
	groups := make([][]engine.Op, len(cmds))
	for i, c := range cmds {
		if _, nested := c.GetOp().(*raftv1.Command_Multi); nested {
			out[i].err = invalidf("nested multi command")
			continue
		}
		f.ops = nil // each group keeps its own slice
		ops, err := f.decode(c)
		if err != nil {
			out[i].err = err
			continue
		}
		groups[i] = ops
	}
	f.ops = nil
	res, _ := f.store.ApplyEach(index, groups)
	for i := range res {
		if out[i].err == nil {
			out[i].res = res[i]
		}
	}
	return out
}

// applyEvict removes the keys the leader chose that are still as it saw
// them (engine.ApplyEvict), identically on every replica.
func (f *fsm) applyEvict(index uint64, cmd *raftv1.EvictCommand) any {
	keys := make([]engine.EvictKey, len(cmd.GetKeys()))
	for i, k := range cmd.GetKeys() {
		keys[i] = engine.EvictKey{Key: k.GetKey(), ModRevision: k.GetModRevision()}
	}
	f.store.ApplyEvict(index, keys)
	if f.evicted != nil {
		f.evicted()
	}
	return applyResult{res: engine.Result{Revision: f.store.Revision()}}
}

func (f *fsm) decode(cmd *raftv1.Command) ([]engine.Op, error) {
	ops := f.ops[:0]
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
		return nil, fmt.Errorf("service: command with no operation")
	}
	// Validation happened in the handler; checking again here keeps a
	// malformed entry from reaching the engine on any replica.
	for _, op := range ops {
		if err := engine.ValidateOp(op); err != nil {
			return nil, invalidf("%v", err)
		}
	}
	f.ops = ops
	return ops, nil
}

func (f *fsm) AppliedIndex() uint64 { return f.store.AppliedIndex() }

func (f *fsm) Snapshot() raftnode.Snapshot { return f.store.Snapshot() }

func (f *fsm) Restore(r io.Reader) error { return f.store.Restore(r) }

// fastApplyMulti applies a coalesced MultiCommand whose commands are plain
// puts without building protobuf messages: on a write-heavy node this entry
// is most of the log, and decoding it into messages was a third of the
// apply loop's time. Anything it does not recognise exactly (another
// command, an unknown or repeated field) returns ok=false and takes the
// generic path, so both paths apply the same bytes the same way.
func (f *fsm) fastApplyMulti(index uint64, data []byte) (any, bool) {
	num, typ, n := protowire.ConsumeTag(data)
	if n < 0 || num != commandMultiField || typ != protowire.BytesType {
		return nil, false
	}
	inner, m := protowire.ConsumeBytes(data[n:])
	if m < 0 || n+m != len(data) {
		return nil, false
	}
	ops := f.fastOps[:0]
	for len(inner) > 0 {
		num, typ, n := protowire.ConsumeTag(inner)
		if n < 0 || num != multiCommandsField || typ != protowire.BytesType {
			return nil, false
		}
		sub, m := protowire.ConsumeBytes(inner[n:])
		if m < 0 {
			return nil, false
		}
		op, ok := parsePutCommand(sub)
		if !ok {
			return nil, false
		}
		ops = append(ops, op)
		inner = inner[n+m:]
	}
	f.fastOps = ops
	out := make(multiResult, len(ops))
	groups := make([][]engine.Op, len(ops))
	for i := range ops {
		if err := engine.ValidateOp(ops[i]); err != nil {
			out[i].err = invalidf("%v", err)
			continue
		}
		groups[i] = ops[i : i+1 : i+1]
	}
	res, _ := f.store.ApplyEach(index, groups)
	for i := range res {
		if out[i].err == nil {
			out[i].res = res[i]
		}
	}
	return out, true
}

// parsePutCommand reads Command{put: PutCommand{key, value, prev_kv}} as
// encodePut writes it. Key and value alias b; the engine copies them.
func parsePutCommand(b []byte) (engine.Op, bool) {
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
