// Package fsm is the state machine of a KVDB node: it implements
// raftnode.StateMachine over the engine, decoding each committed entry with
// package command and applying it, and hands the proposer a typed Result.
// It knows nothing of transports, clients or the operation layer above it;
// the apply loop of package raftnode is its only caller.
package fsm

import (
	"io"

	"github.com/kvdb/kvdb/internal/command"
	"github.com/kvdb/kvdb/internal/engine"
	"github.com/kvdb/kvdb/internal/raftnode"
)

// Result is what the proposer of an entry gets back: the value Apply
// returns is always a Result.
type Result struct {
	// Res is the engine's result for a put, delete, batch, transaction or
	// eviction.
	Res engine.Result
	// Err is set when the entry (or, in Multi, the command) was refused:
	// it did not decode or validate, and changed nothing.
	Err error
	// Txn is set for a transaction.
	Txn *engine.TxnResult
	// Multi holds one Result per command of a coalesced entry, in order.
	Multi []Result
}

// FSM applies committed entries to the store. Its methods are called from
// the raft apply loop only, one at a time.
type FSM struct {
	store   *engine.Store
	dec     command.Decoder
	evicted func()
	applies uint64
}

var _ raftnode.StateMachine = (*FSM)(nil)

// New returns the state machine over store. evicted, when not nil, is
// called after each eviction entry is applied.
func New(store *engine.Store, evicted func()) *FSM {
	return &FSM{store: store, evicted: evicted}
}

// Apply implements raftnode.StateMachine; it always returns a Result.
func (f *FSM) Apply(index uint64, data []byte) any {
	r := f.apply(index, data)
	f.applies++
	// The check visits every key under the store's lock, so the sample
	// thins as the store grows: its cost stays a small share of applying.
	if invariants && f.applies%(invariantSample*(1+uint64(f.store.Len())/invariantKeysPerCheck)) == 0 {
		checkInvariants(f.store, "apply")
	}
	return r
}

func (f *FSM) apply(index uint64, data []byte) Result {
	if data == nil {
		f.store.MarkApplied(index)
		return Result{Res: engine.Result{Revision: f.store.Revision()}}
	}
	d, err := f.dec.Decode(data)
	if err != nil {
		// The entry passed the WAL's checksum, so it is what was proposed;
		// a command that does not decode is a bug in the proposer, not a
		// reason to stop the replica. Skip it deterministically.
		f.store.MarkApplied(index)
		return Result{Err: err}
	}
	switch d.Kind {
	case command.KindTxn:
		res, _, err := f.store.ApplyTxn(index, d.Txn)
		if err != nil {
			return Result{Res: res.Result, Err: command.Invalid(err)}
		}
		return Result{Res: res.Result, Txn: &res}
	case command.KindEvict:
		f.store.ApplyEvict(index, d.Evict)
		if invariants {
			checkInvariants(f.store, "eviction")
		}
		if f.evicted != nil {
			f.evicted()
		}
		return Result{Res: engine.Result{Revision: f.store.Revision()}}
	case command.KindMulti:
		out := make([]Result, len(d.Groups))
		res, _ := f.store.ApplyEach(index, d.Groups)
		for i := range out {
			if d.Errs[i] != nil {
				out[i].Err = d.Errs[i]
			} else if i < len(res) {
				out[i].Res = res[i]
			}
		}
		return Result{Res: engine.Result{Revision: f.store.Revision()}, Multi: out}
	}
	res, _ := f.store.Apply(index, d.Ops)
	return Result{Res: res}
}

// AppliedIndex implements raftnode.StateMachine.
func (f *FSM) AppliedIndex() uint64 { return f.store.AppliedIndex() }

// Snapshot implements raftnode.StateMachine.
func (f *FSM) Snapshot() raftnode.Snapshot { return f.store.Snapshot() }

// Restore implements raftnode.StateMachine.
func (f *FSM) Restore(r io.Reader) error {
	if err := f.store.Restore(r); err != nil {
		return err
	}
	if invariants {
		checkInvariants(f.store, "restore")
	}
	return nil
}
