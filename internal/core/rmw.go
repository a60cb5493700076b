package core

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/kvdb/kvdb/internal/auth"
	"github.com/kvdb/kvdb/internal/command"
	"github.com/kvdb/kvdb/internal/engine"
	"github.com/kvdb/kvdb/internal/fsm"
)

// Read-modify-writes: the state machine reads the key when the entry is
// applied and writes the value computed from it (command.RMW), so each is
// atomic and identical on every replica, with no retry loop. They are
// writes like puts: prepared here, then Submit or Do, coalesced with other
// writes into shared raft entries. The Redis protocol's INCR*, DECR*,
// INCRBYFLOAT, APPEND, SETRANGE and RENAME* are these. They are recorded
// under OpRMW.

// The longest values INCRBY and INCRBYFLOAT write: "-9223372036854775808",
// and the smallest subnormal float64 in fsm.FormatFloat's notation without
// an exponent (327 bytes with its sign), rounded up.
const (
	maxIntLen   = 20
	maxFloatLen = 330
)

// RMWResult is a read-modify-write's answer (WriteResult.RMW): N is the new
// integer of IncrBy, the new length of Append or SetRange, 1 when Rename
// renamed; Value the new value of IncrByFloat.
type RMWResult = fsm.RMWResult

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

// rmwError gives the state machine's ErrNoSuchKey its code.
func rmwError(err error) error {
	if errors.Is(err, command.ErrNoSuchKey) {
		return ErrNoSuchKey
	}
	return err
}

// PrepareIncrBy prepares adding delta to key's decimal integer value (an
// absent key counts as 0); RMW.N is the new value. The caller must be
// allowed to read and write key.
func (c *Core) PrepareIncrBy(ctx context.Context, key []byte, delta int64) (Write, error) {
	return c.prepareRMW(ctx, &command.RMW{Op: command.RMWIncrBy, Key: key, Delta: delta}, engine.EntryGrowth(len(key), maxIntLen))
}

// PrepareIncrByFloat prepares adding delta to key's decimal number value;
// RMW.Value is the new value as stored.
func (c *Core) PrepareIncrByFloat(ctx context.Context, key []byte, delta float64) (Write, error) {
	if math.IsNaN(delta) || math.IsInf(delta, 0) {
		return Write{}, ErrNaN
	}
	return c.prepareRMW(ctx, &command.RMW{Op: command.RMWIncrByFloat, Key: key, FloatDelta: delta}, engine.EntryGrowth(len(key), maxFloatLen))
}

// PrepareAppend prepares appending value to key's value (an absent key is
// empty); RMW.N is the new length. Past max-value-size it fails with
// ErrValueTooLong when applied.
func (c *Core) PrepareAppend(ctx context.Context, key, value []byte) (Write, error) {
	if err := c.limits.checkValue(value); err != nil {
		return Write{}, err
	}
	return c.prepareRMW(ctx, &command.RMW{Op: command.RMWAppend, Key: key, Value: value}, engine.EntryGrowth(len(key), len(value)))
}

// PrepareSetRange prepares overwriting key's value from offset with value,
// padding with zero bytes; RMW.N is the new length.
func (c *Core) PrepareSetRange(ctx context.Context, key []byte, offset int64, value []byte) (Write, error) {
	if offset < 0 {
		return Write{}, invalidf("offset is out of range")
	}
	if len(value) > 0 && offset+int64(len(value)) > int64(c.limits.MaxValueSize) {
		return Write{}, ErrValueTooLong
	}
	var grow int64
	if len(value) > 0 {
		grow = engine.EntryGrowth(len(key), int(offset)+len(value))
	}
	return c.prepareRMW(ctx, &command.RMW{Op: command.RMWSetRange, Key: key, Offset: offset, Value: value}, grow)
}

// PrepareRename prepares moving src's value to dst (replacing it, or, with
// onlyIfAbsent, only when dst does not exist); RMW.N is 1 when it did. A
// missing src fails with ErrNoSuchKey. The caller must be allowed to read
// and write src and write dst.
func (c *Core) PrepareRename(ctx context.Context, src, dst []byte, onlyIfAbsent bool) (Write, error) {
	rev := c.authRevision()
	if err := c.limits.checkKey(dst); err != nil {
		return Write{}, err
	}
	if err := c.authorize(ctx, auth.Write, dst, nil); err != nil {
		return Write{}, err
	}
	// The value moves: the store grows by the longer key and the tail.
	grow := engine.RewriteGrowth(len(dst) - len(src))
	w, err := c.prepareRMW(ctx, &command.RMW{Op: command.RMWRename, Key: src, Dest: dst, OnlyIfAbsent: onlyIfAbsent}, grow)
	w.authRev = rev // the earlier check's
	return w, err
}

// IncrBy, IncrByFloat, Append, SetRange and Rename prepare and run a
// read-modify-write in one call.
func (c *Core) IncrBy(ctx context.Context, key []byte, delta int64) (int64, error) {
	r, err := c.doRMW(ctx)(c.PrepareIncrBy(ctx, key, delta))
	return r.N, err
}

// IncrByFloat: see PrepareIncrByFloat.
func (c *Core) IncrByFloat(ctx context.Context, key []byte, delta float64) ([]byte, error) {
	w, err := c.PrepareIncrByFloat(ctx, key, delta)
	r, err := c.doRMW(ctx)(w, err)
	return r.Value, err
}

// Append: see PrepareAppend.
func (c *Core) Append(ctx context.Context, key, value []byte) (int64, error) {
	r, err := c.doRMW(ctx)(c.PrepareAppend(ctx, key, value))
	return r.N, err
}

// SetRange: see PrepareSetRange.
func (c *Core) SetRange(ctx context.Context, key []byte, offset int64, value []byte) (int64, error) {
	r, err := c.doRMW(ctx)(c.PrepareSetRange(ctx, key, offset, value))
	return r.N, err
}

// Rename: see PrepareRename.
func (c *Core) Rename(ctx context.Context, src, dst []byte, onlyIfAbsent bool) (bool, error) {
	r, err := c.doRMW(ctx)(c.PrepareRename(ctx, src, dst, onlyIfAbsent))
	return r.N == 1, err
}

// ExpireCondition is EXPIRE's option: command.ExpireAlways, ExpireNX,
// ExpireXX, ExpireGT or ExpireLT.
type ExpireCondition = uint32

// The conditions of Expire.
const (
	ExpireAlways ExpireCondition = command.ExpireAlways
	ExpireNX     ExpireCondition = command.ExpireNX
	ExpireXX     ExpireCondition = command.ExpireXX
	ExpireGT     ExpireCondition = command.ExpireGT
	ExpireLT     ExpireCondition = command.ExpireLT
)

// PrepareExpire prepares giving key the deadline at (unix ms) under cond,
// keeping its value and lease; RMW.N is 1 when it did (0: no such key, or
// the condition does not hold). The caller must be allowed to read and
// write key.
func (c *Core) PrepareExpire(ctx context.Context, key []byte, at int64, cond ExpireCondition) (Write, error) {
	if at <= 0 {
		return Write{}, invalidf("invalid expire time")
	}
	if cond > ExpireLT {
		return Write{}, invalidf("unknown expire condition")
	}
	if at > time.Now().Add(c.limits.MaxTTL).UnixMilli() {
		return Write{}, invalidf("invalid expire time: over the max-ttl limit of %s", c.limits.MaxTTL)
	}
	return c.prepareRMW(ctx, &command.RMW{Op: command.RMWExpire, Key: key, Deadline: at, Condition: cond}, engine.RewriteGrowth(0))
}

// PreparePersist prepares removing key's deadline; RMW.N is 1 when it had
// one.
func (c *Core) PreparePersist(ctx context.Context, key []byte) (Write, error) {
	return c.prepareRMW(ctx, &command.RMW{Op: command.RMWPersist, Key: key}, engine.RewriteGrowth(0))
}

// PrepareSetKeepTTL prepares storing value in key while keeping the key's
// deadline and lease (SET KEEPTTL).
func (c *Core) PrepareSetKeepTTL(ctx context.Context, key, value []byte) (Write, error) {
	if err := c.limits.checkValue(value); err != nil {
		return Write{}, err
	}
	return c.prepareRMW(ctx, &command.RMW{Op: command.RMWSetKeepTTL, Key: key, Value: value}, entryGrowth(key, value))
}

// Expire and Persist: see PrepareExpire and PreparePersist.
func (c *Core) Expire(ctx context.Context, key []byte, at int64, cond ExpireCondition) (bool, error) {
	r, err := c.doRMW(ctx)(c.PrepareExpire(ctx, key, at, cond))
	return r.N == 1, err
}

// Persist: see PreparePersist.
func (c *Core) Persist(ctx context.Context, key []byte) (bool, error) {
	r, err := c.doRMW(ctx)(c.PreparePersist(ctx, key))
	return r.N == 1, err
}

// doRMW runs a prepared read-modify-write with Do.
func (c *Core) doRMW(ctx context.Context) func(Write, error) (RMWResult, error) {
	return func(w Write, err error) (RMWResult, error) {
		if err != nil {
			return RMWResult{}, err
		}
		res, err := c.Do(ctx, w)
		return res.RMW, err
	}
}

// prepareRMW checks and encodes one read-modify-write; grow is the most it
// can add to MemoryUsage when applied, whatever the key holds then (it may
// differ from what this node's store holds now), and is what the write
// reserves against MaxMemory:
//
//   - a computed value adds at most a new key's EntryGrowth with n value
//     bytes, n being what the request can add: the longest number INCRBY
//     and INCRBYFLOAT write, APPEND's bytes, SETRANGE's offset plus
//     length, SET KEEPTTL's value. An absent key is written without a
//     deadline or lease (EntryGrowth); an existing one grows by at most n
//     bytes and its tail (engine.RewriteGrowth(n), which is less);
//   - EXPIRE and PERSIST rewrite the key with its value: at most
//     engine.RewriteGrowth(0), the tail's growth (nothing for a missing
//     key);
//   - RENAME moves the value to the new key: at most the longer key's
//     extra bytes and the tail's growth.
func (c *Core) prepareRMW(ctx context.Context, r *command.RMW, grow int64) (Write, error) {
	rev := c.authRevision()
	if _, err := c.authenticated(ctx); err != nil {
		return Write{}, err
	}
	if err := c.limits.checkKey(r.Key); err != nil {
		return Write{}, err
	}
	if err := c.authorize(ctx, auth.Read, r.Key, nil); err != nil {
		return Write{}, err
	}
	if err := c.authorize(ctx, auth.Write, r.Key, nil); err != nil {
		return Write{}, err
	}
	r.MaxValueSize = int64(c.limits.MaxValueSize)
	r.Now = nowMillis()
	data, err := command.EncodeRMW(r)
	if err != nil {
		return Write{}, err
	}
	return Write{op: OpRMW, data: data, rmw: true, grow: grow, authRev: rev}, nil
}
