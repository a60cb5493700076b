// Package fsm is the state machine of a KVDB node: it implements
// raftnode.StateMachine over the engine, decoding each committed entry with
// package command and applying it, and hands the proposer a typed Result.
// It knows nothing of transports, clients or the operation layer above it;
// the apply loop of package raftnode is its only caller.
package fsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/kvdb/kvdb/internal/auth"
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
	// RMW is set for a read-modify-write.
	RMW *RMWResult
	// Removed is the number of keys an expiry or a lease revoke deleted.
	Removed int
}

// FSM applies committed entries to the store. Its methods are called from
// the raft apply loop only, one at a time.
type FSM struct {
	store   *engine.Store
	auth    *auth.Store
	dec     command.Decoder
	evicted func()
	leases  func(id, ttl int64, granted bool)
	applies uint64
}

// SetLeaseHook installs fn, called by the apply loop after each applied
// lease grant (granted) or revoke; before the node starts.
func (f *FSM) SetLeaseHook(fn func(id, ttl int64, granted bool)) { f.leases = fn }

var _ raftnode.StateMachine = (*FSM)(nil)

// New returns the state machine over store and the auth state users (nil:
// a private one). evicted, when not nil, is called after each eviction
// entry is applied.
func New(store *engine.Store, users *auth.Store, evicted func()) *FSM {
	if users == nil {
		users = auth.NewStore()
	}
	return &FSM{store: store, auth: users, evicted: evicted}
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
	if f.auth.Enabled() && f.refuseStale(&d) {
		f.store.MarkApplied(index)
		return Result{Res: engine.Result{Revision: f.store.Revision()}, Err: auth.ErrOldRevision}
	}
	switch d.Kind {
	case command.KindTxn:
		res, _, err := f.store.ApplyTxn(index, d.Txn)
		switch {
		case errors.Is(err, engine.ErrLeaseNotFound):
			return Result{Res: res.Result, Err: err}
		case err != nil:
			return Result{Res: res.Result, Err: command.Invalid(err)}
		}
		return Result{Res: res.Result, Txn: &res}
	case command.KindRMW:
		return f.applyRMW(index, d.RMW)
	case command.KindAuth:
		err := f.auth.Apply(d.Auth)
		f.store.MarkApplied(index)
		return Result{Res: engine.Result{Revision: f.store.Revision()}, Err: err}
	case command.KindExpire:
		n, _ := f.store.ApplyExpire(index, d.Evict)
		if invariants {
			checkInvariants(f.store, "expiry")
		}
		return Result{Res: engine.Result{Revision: f.store.Revision()}, Removed: n}
	case command.KindLeaseGrant:
		err := f.store.ApplyLeaseGrant(index, d.Lease.ID, d.Lease.TTL)
		if err == nil && f.leases != nil {
			f.leases(d.Lease.ID, d.Lease.TTL, true)
		}
		return Result{Res: engine.Result{Revision: f.store.Revision()}, Err: err}
	case command.KindLeaseRevoke:
		n, err := f.store.ApplyLeaseRevoke(index, d.Lease.ID, d.Lease.Expired)
		if err == nil && f.leases != nil {
			f.leases(d.Lease.ID, 0, false)
		}
		if invariants {
			checkInvariants(f.store, "lease revoke")
		}
		return Result{Res: engine.Result{Revision: f.store.Revision()}, Removed: n, Err: err}
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
		if d.RMWs != nil {
			return f.applyMultiRMW(index, d)
		}
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

// refuseStale applies the auth revision check while authentication is on:
// a command a caller proposed (every kind but the leader's own evictions,
// expiries and lease expiries) whose permissions were checked against an
// older auth state than the current one is refused, since a permission it
// relied on may be gone. A command without an auth revision was checked
// with authentication off (or written before commands carried one, so a
// replayed log applies as it did) and is not refused. It reports whether
// the whole entry is refused; in a multi it marks the refused commands in
// d.Errs instead. The check reads only replicated state, so every replica
// decides alike.
func (f *FSM) refuseStale(d *command.Decoded) bool {
	rev := f.auth.Revision()
	switch d.Kind {
	case command.KindEvict, command.KindExpire:
		return false
	case command.KindLeaseRevoke:
		return !d.Lease.Expired && stale(d.AuthRevision, rev)
	case command.KindMulti:
		for i := range d.Groups {
			var r uint64
			if d.AuthRevisions != nil {
				r = d.AuthRevisions[i]
			}
			if stale(r, rev) && d.Errs[i] == nil {
				d.Errs[i], d.Groups[i] = auth.ErrOldRevision, nil
				if d.RMWs != nil {
					d.RMWs[i] = nil
				}
			}
		}
		return false
	}
	return stale(d.AuthRevision, rev)
}

// stale reports whether a command checked at auth revision checked (0:
// not checked) is refused at auth revision now.
func stale(checked, now uint64) bool { return checked != 0 && checked < now }

// AppliedIndex implements raftnode.StateMachine.
func (f *FSM) AppliedIndex() uint64 { return f.store.AppliedIndex() }

// A snapshot is the auth section followed by the engine's snapshot:
//
//	"KVDBAUTH" | length uint32 big endian | raftv1.AuthState (length bytes) | engine snapshot
//
// Snapshots taken before the auth section existed start with the engine's
// own magic; Restore reads them as an empty auth state.
const authMagic = "KVDBAUTH"

// maxAuthSection bounds the auth section a snapshot may declare.
const maxAuthSection = 64 << 20

type snapshot struct {
	engine raftnode.Snapshot
	auth   []byte
}

func (s *snapshot) Index() uint64 { return s.engine.Index() }

func (s *snapshot) WriteTo(w io.Writer) (int64, error) {
	hdr := make([]byte, 0, len(authMagic)+4+len(s.auth))
	hdr = append(hdr, authMagic...)
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(len(s.auth)))
	hdr = append(hdr, s.auth...)
	n, err := w.Write(hdr)
	if err != nil {
		return int64(n), err
	}
	m, err := s.engine.WriteTo(w)
	return int64(n) + m, err
}

// Snapshot implements raftnode.StateMachine: the engine's copy-on-write
// snapshot and the auth state, both as of AppliedIndex.
func (f *FSM) Snapshot() raftnode.Snapshot {
	a, err := f.auth.Marshal()
	if err != nil {
		panic(fmt.Sprintf("fsm: encode auth state: %v", err)) // a generated message always encodes
	}
	return &snapshot{engine: f.store.Snapshot(), auth: a}
}

// Restore implements raftnode.StateMachine.
func (f *FSM) Restore(r io.Reader) error {
	users, br, err := readAuthSection(r)
	if err != nil {
		return err
	}
	if err := f.store.Restore(br); err != nil {
		return err
	}
	if err := f.auth.Restore(users.State()); err != nil {
		return err
	}
	if invariants {
		checkInvariants(f.store, "restore")
	}
	return nil
}

// VerifySnapshot implements raftnode.SnapshotVerifier: it checks a
// snapshot stream as Restore reads it, without changing anything.
func (f *FSM) VerifySnapshot(r io.Reader) error {
	_, br, err := readAuthSection(r)
	if err != nil {
		return err
	}
	return engine.VerifySnapshot(br)
}

// readAuthSection reads a snapshot's auth section, if it has one, and
// returns the users it holds and the rest of the stream (the engine's).
func readAuthSection(r io.Reader) (*auth.Store, *bufio.Reader, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(len(authMagic))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", engine.ErrCorruptSnapshot, err)
	}
	authState := []byte(nil)
	if bytes.Equal(magic, []byte(authMagic)) {
		var hdr [len(authMagic) + 4]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return nil, nil, fmt.Errorf("%w: auth section: %w", engine.ErrCorruptSnapshot, err)
		}
		n := binary.BigEndian.Uint32(hdr[len(authMagic):])
		if n > maxAuthSection {
			return nil, nil, fmt.Errorf("%w: auth section of %d bytes", engine.ErrCorruptSnapshot, n)
		}
		authState = make([]byte, n)
		if _, err := io.ReadFull(br, authState); err != nil {
			return nil, nil, fmt.Errorf("%w: auth section: %w", engine.ErrCorruptSnapshot, err)
		}
	}
	users := auth.NewStore()
	if err := users.Unmarshal(authState); err != nil {
		return nil, nil, fmt.Errorf("%w: auth section: %w", engine.ErrCorruptSnapshot, err)
	}
	return users, br, nil
}
