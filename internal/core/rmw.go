package core

import (
	"context"
	"errors"
	"math"

	"github.com/kvdb/kvdb/internal/auth"
	"github.com/kvdb/kvdb/internal/command"
	"github.com/kvdb/kvdb/internal/engine"
	"github.com/kvdb/kvdb/internal/fsm"
)

// Read-modify-writes: the state machine reads the key when the entry is
// applied and writes the value computed from it (command.RMW), so each is
// one raft entry, atomic and identical on every replica, with no retry
// loop. The Redis protocol's INCR*, DECR*, INCRBYFLOAT, APPEND, SETRANGE
// and RENAME* are these. They are recorded under OpRMW.

// The errors a read-modify-write is refused with when applied. All but
// ErrNoSuchKey are InvalidArgument; their texts are Redis's.
var (
	ErrNotInteger   = command.ErrNotInteger
	ErrNotFloat     = command.ErrNotFloat
	ErrOverflow     = command.ErrOverflow
	ErrNaN          = command.ErrNaN
	ErrValueTooLong = command.ErrValueTooLong
	// ErrNoSuchKey is a rename of a key that does not exist (NotFound).
	ErrNoSuchKey = &Error{Code: NotFound, Msg: command.ErrNoSuchKey.Error()}
)

// IncrBy adds delta to key's decimal integer value (an absent key counts
// as 0) and returns the new value. The caller must be allowed to read and
// write key.
func (c *Core) IncrBy(ctx context.Context, key []byte, delta int64) (int64, error) {
	r, err := c.rmw(ctx, &command.RMW{Op: command.RMWIncrBy, Key: key, Delta: delta}, 20)
	return r.N, err
}

// IncrByFloat adds delta to key's decimal number value and returns the new
// value as stored.
func (c *Core) IncrByFloat(ctx context.Context, key []byte, delta float64) ([]byte, error) {
	if math.IsNaN(delta) || math.IsInf(delta, 0) {
		return nil, ErrNaN
	}
	r, err := c.rmw(ctx, &command.RMW{Op: command.RMWIncrByFloat, Key: key, FloatDelta: delta}, 330)
	return r.Value, err
}

// Append appends value to key's value (an absent key is empty) and returns
// the new length; past max-value-size it fails with ErrValueTooLong.
func (c *Core) Append(ctx context.Context, key, value []byte) (int64, error) {
	if err := c.limits.checkValue(value); err != nil {
		return 0, err
	}
	r, err := c.rmw(ctx, &command.RMW{Op: command.RMWAppend, Key: key, Value: value}, int64(c.limits.MaxValueSize))
	return r.N, err
}

// SetRange overwrites key's value from offset with value, padding with zero
// bytes, and returns the new length.
func (c *Core) SetRange(ctx context.Context, key []byte, offset int64, value []byte) (int64, error) {
	if offset < 0 {
		return 0, invalidf("offset is out of range")
	}
	if len(value) > 0 && offset+int64(len(value)) > int64(c.limits.MaxValueSize) {
		return 0, ErrValueTooLong
	}
	r, err := c.rmw(ctx, &command.RMW{Op: command.RMWSetRange, Key: key, Offset: offset, Value: value}, offset+int64(len(value)))
	return r.N, err
}

// Rename moves src's value to dst (replacing it, or, with onlyIfAbsent,
// only when dst does not exist) and reports whether it did. A missing src
// fails with ErrNoSuchKey. The caller must be allowed to read and write
// src and write dst.
func (c *Core) Rename(ctx context.Context, src, dst []byte, onlyIfAbsent bool) (bool, error) {
	if err := c.limits.checkKey(dst); err != nil {
		return false, err
	}
	if err := c.authorize(ctx, auth.Write, dst, nil); err != nil {
		return false, err
	}
	r, err := c.rmw(ctx, &command.RMW{Op: command.RMWRename, Key: src, Dest: dst, OnlyIfAbsent: onlyIfAbsent}, int64(c.limits.MaxValueSize))
	return r.N == 1, err
}

// rmw checks, admits and proposes one read-modify-write as its own entry;
// grow is the most its new value can hold.
func (c *Core) rmw(ctx context.Context, r *command.RMW, grow int64) (fsm.RMWResult, error) {
	if _, err := c.authenticated(ctx); err != nil {
		return fsm.RMWResult{}, err
	}
	if err := c.limits.checkKey(r.Key); err != nil {
		return fsm.RMWResult{}, err
	}
	if err := c.authorize(ctx, auth.Read, r.Key, nil); err != nil {
		return fsm.RMWResult{}, err
	}
	if err := c.authorize(ctx, auth.Write, r.Key, nil); err != nil {
		return fsm.RMWResult{}, err
	}
	r.MaxValueSize = int64(c.limits.MaxValueSize)
	data, err := command.EncodeRMW(r)
	if err != nil {
		return fsm.RMWResult{}, err
	}
	ctx, cancel := c.requestContext(ctx)
	defer cancel()
	release, err := c.mem.admit(ctx, c.stopC, int64(len(r.Key)+len(r.Dest))+grow+engine.EntryOverhead)
	if err != nil {
		return fsm.RMWResult{}, err
	}
	defer release()
	res, err := c.proposeAlone(ctx, data)
	if errors.Is(err, command.ErrNoSuchKey) {
		return fsm.RMWResult{}, ErrNoSuchKey
	}
	if err != nil {
		return fsm.RMWResult{}, err
	}
	if res.RMW == nil {
		return fsm.RMWResult{}, Errorf(Internal, "read-modify-write applied without a result")
	}
	return *res.RMW, nil
}
