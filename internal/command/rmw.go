package command

import (
	"errors"
	"math"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	"github.com/kvdb/kvdb/internal/engine"
)

// RMWOp says how a read-modify-write computes the new value.
type RMWOp uint8

// The read-modify-write operations.
const (
	RMWIncrBy RMWOp = iota + 1
	RMWIncrByFloat
	RMWAppend
	RMWSetRange
	RMWRename
	RMWExpire
	RMWPersist
	RMWSetKeepTTL
)

// The conditions of an RMWExpire, as Redis's EXPIRE options.
const (
	ExpireAlways = iota
	ExpireNX     // only when the key has no deadline
	ExpireXX     // only when it has one
	ExpireGT     // only when the new deadline is later (no deadline is infinite)
	ExpireLT     // only when it is earlier
)

// RMW is a read-modify-write of one key (two for a rename): the state
// machine reads Key when the entry is applied and writes the value computed
// from it, so the command is atomic and identical on every replica.
type RMW struct {
	Op         RMWOp
	Key        []byte
	Delta      int64   // RMWIncrBy
	FloatDelta float64 // RMWIncrByFloat
	Value      []byte  // RMWAppend, RMWSetRange
	Offset     int64   // RMWSetRange
	Dest       []byte  // RMWRename
	// OnlyIfAbsent makes a rename do nothing when Dest exists.
	OnlyIfAbsent bool
	// MaxValueSize bounds the value the write may produce.
	MaxValueSize int64
	// Deadline is what RMWExpire sets (unix ms), under Condition.
	Deadline  int64
	Condition uint32
	// Now is the preparing node's clock (unix ms): a key whose deadline is
	// at or before it counts as absent.
	Now int64
}

// The errors a read-modify-write is refused with when applied; the texts
// are the Redis protocol's (without its "ERR " prefix). They match ErrInvalid,
// except ErrNoSuchKey.
var (
	ErrNotInteger   = &invalidError{msg: "value is not an integer or out of range"}
	ErrNotFloat     = &invalidError{msg: "value is not a valid float"}
	ErrOverflow     = &invalidError{msg: "increment or decrement would overflow"}
	ErrNaN          = &invalidError{msg: "increment would produce NaN or Infinity"}
	ErrValueTooLong = &invalidError{msg: "string exceeds maximum allowed size"}
	ErrNoSuchKey    = errors.New("no such key")
)

var rmwOpsOut = map[RMWOp]raftv1.RmwOp{
	RMWIncrBy:      raftv1.RmwOp_RMW_OP_INCR_BY,
	RMWIncrByFloat: raftv1.RmwOp_RMW_OP_INCR_BY_FLOAT,
	RMWAppend:      raftv1.RmwOp_RMW_OP_APPEND,
	RMWSetRange:    raftv1.RmwOp_RMW_OP_SET_RANGE,
	RMWRename:      raftv1.RmwOp_RMW_OP_RENAME,
	RMWExpire:      raftv1.RmwOp_RMW_OP_EXPIRE,
	RMWPersist:     raftv1.RmwOp_RMW_OP_PERSIST,
	RMWSetKeepTTL:  raftv1.RmwOp_RMW_OP_SET_KEEP_TTL,
}

var rmwOpsIn = invert(rmwOpsOut)

// EncodeRMW encodes a read-modify-write.
func EncodeRMW(r *RMW) ([]byte, error) {
	op, ok := rmwOpsOut[r.Op]
	if !ok {
		return nil, invalidf("unknown read-modify-write operation %d", r.Op)
	}
	return marshal(&raftv1.Command{Op: &raftv1.Command_Rmw{Rmw: &raftv1.RmwCommand{
		Op: op, Key: r.Key, Delta: r.Delta, FloatDelta: r.FloatDelta, Value: r.Value,
		Offset: r.Offset, Dest: r.Dest, OnlyIfAbsent: r.OnlyIfAbsent, MaxValueSize: r.MaxValueSize,
		DeadlineMs: r.Deadline, ExpireCondition: r.Condition, NowMs: r.Now,
	}}})
}

// decodeRMW converts and validates the log form.
func decodeRMW(c *raftv1.RmwCommand) (*RMW, error) {
	r := &RMW{
		Op: rmwOpsIn[c.GetOp()], Key: c.GetKey(), Delta: c.GetDelta(), FloatDelta: c.GetFloatDelta(),
		Value: c.GetValue(), Offset: c.GetOffset(), Dest: c.GetDest(), OnlyIfAbsent: c.GetOnlyIfAbsent(),
		MaxValueSize: c.GetMaxValueSize(), Deadline: c.GetDeadlineMs(), Condition: c.GetExpireCondition(), Now: c.GetNowMs(),
	}
	if r.Op == RMWExpire && (r.Deadline <= 0 || r.Condition > ExpireLT) {
		return nil, invalidf("expire needs a positive deadline and a known condition")
	}
	if r.Op == 0 {
		return nil, invalidf("unknown read-modify-write operation %v", c.GetOp())
	}
	if err := engine.ValidateOp(engine.Op{Type: engine.OpPut, Key: r.Key}); err != nil {
		return nil, invalidf("%v", err)
	}
	if r.Op == RMWRename {
		if err := engine.ValidateOp(engine.Op{Type: engine.OpPut, Key: r.Dest}); err != nil {
			return nil, invalidf("%v", err)
		}
	}
	if r.Op == RMWIncrByFloat && (math.IsNaN(r.FloatDelta) || math.IsInf(r.FloatDelta, 0)) {
		return nil, ErrNaN
	}
	if r.Offset < 0 || r.MaxValueSize < 0 {
		return nil, invalidf("negative offset or size in a read-modify-write")
	}
	return r, nil
}
