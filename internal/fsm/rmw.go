package fsm

import (
	"math"
	"strconv"

	"github.com/kvdb/kvdb/internal/command"
	"github.com/kvdb/kvdb/internal/engine"
)

// RMWResult is a read-modify-write's answer: N is the new integer of an
// INCRBY, the new length of an APPEND or SETRANGE, 1 or 0 for whether a
// rename happened; Value is the new value of an INCRBYFLOAT.
type RMWResult struct {
	N     int64
	Value []byte
}

// applyRMW reads the key, computes the new value and applies it at index:
// the apply loop is the only writer, so nothing comes between the read and
// the write, and every replica computes the same value from the same state.
func (f *FSM) applyRMW(index uint64, r *command.RMW) Result {
	if index <= f.store.AppliedIndex() {
		return Result{Res: engine.Result{Revision: f.store.Revision()}}
	}
	ops, out, err := computeRMW(f.store.Get, r)
	if err != nil || len(ops) == 0 {
		f.store.MarkApplied(index)
		return Result{Res: engine.Result{Revision: f.store.Revision()}, Err: err, RMW: &out}
	}
	res, _ := f.store.Apply(index, ops)
	return Result{Res: res, RMW: &out}
}

// applyMultiRMW applies a coalesced entry that holds read-modify-writes:
// each command in order at its own revision, a read-modify-write computed
// from the state the commands before it left.
func (f *FSM) applyMultiRMW(index uint64, d command.Decoded) Result {
	out := make([]Result, len(d.Groups))
	res, ok := f.store.ApplyEachWith(index, len(d.Groups), func(g int, get func([]byte) (engine.KeyValue, bool)) []engine.Op {
		switch {
		case d.Errs[g] != nil:
			out[g].Err = d.Errs[g]
			return nil
		case d.RMWs[g] != nil:
			ops, r, err := computeRMW(get, d.RMWs[g])
			out[g].RMW, out[g].Err = &r, err
			return ops
		}
		return d.Groups[g]
	})
	if ok {
		for i := range out {
			out[i].Res = res[i]
		}
	}
	return Result{Res: engine.Result{Revision: f.store.Revision()}, Multi: out}
}

// computeRMW returns the writes r makes on the state get reads.
func computeRMW(get func([]byte) (engine.KeyValue, bool), r *command.RMW) ([]engine.Op, RMWResult, error) {
	cur, exists := get(r.Key)
	if exists && cur.Expired(r.Now) {
		// Past its deadline, not yet expired: absent, and a write replaces
		// it without its deadline.
		cur, exists = engine.KeyValue{}, false
	}
	// A computed value keeps the key's deadline and lease, as Redis keeps
	// a key's TTL through INCR or APPEND.
	put := func(v []byte) []engine.Op {
		return []engine.Op{{Type: engine.OpPut, Key: r.Key, Value: v, Deadline: cur.Deadline, Lease: cur.Lease, Now: r.Now}}
	}
	switch r.Op {
	case command.RMWExpire:
		if !exists {
			return nil, RMWResult{N: 0}, nil
		}
		ok := true
		switch r.Condition {
		case command.ExpireNX:
			ok = cur.Deadline == 0
		case command.ExpireXX:
			ok = cur.Deadline != 0
		case command.ExpireGT:
			ok = cur.Deadline != 0 && r.Deadline > cur.Deadline
		case command.ExpireLT:
			ok = cur.Deadline == 0 || r.Deadline < cur.Deadline
		}
		if !ok {
			return nil, RMWResult{N: 0}, nil
		}
		return []engine.Op{{Type: engine.OpPut, Key: r.Key, Value: cur.Value, Deadline: r.Deadline, Lease: cur.Lease}}, RMWResult{N: 1}, nil
	case command.RMWSetKeepTTL:
		return put(r.Value), RMWResult{N: 1}, nil
	case command.RMWPersist:
		if !exists || cur.Deadline == 0 {
			return nil, RMWResult{N: 0}, nil
		}
		return []engine.Op{{Type: engine.OpPut, Key: r.Key, Value: cur.Value, Lease: cur.Lease}}, RMWResult{N: 1}, nil
	case command.RMWIncrBy:
		var n int64
		if exists {
			var ok bool
			if n, ok = ParseInt(cur.Value); !ok {
				return nil, RMWResult{}, command.ErrNotInteger
			}
		}
		if (r.Delta > 0 && n > math.MaxInt64-r.Delta) || (r.Delta < 0 && n < math.MinInt64-r.Delta) {
			return nil, RMWResult{}, command.ErrOverflow
		}
		n += r.Delta
		return put(strconv.AppendInt(nil, n, 10)), RMWResult{N: n}, nil
	case command.RMWIncrByFloat:
		var x float64
		if exists {
			var ok bool
			if x, ok = ParseFloat(cur.Value); !ok {
				return nil, RMWResult{}, command.ErrNotFloat
			}
		}
		x += r.FloatDelta
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, RMWResult{}, command.ErrNaN
		}
		v := FormatFloat(x)
		return put(v), RMWResult{Value: v}, nil
	case command.RMWAppend:
		n := int64(len(cur.Value)) + int64(len(r.Value))
		if r.MaxValueSize > 0 && n > r.MaxValueSize {
			return nil, RMWResult{}, command.ErrValueTooLong
		}
		v := make([]byte, 0, n)
		v = append(append(v, cur.Value...), r.Value...)
		return put(v), RMWResult{N: n}, nil
	case command.RMWSetRange:
		if len(r.Value) == 0 {
			return nil, RMWResult{N: int64(len(cur.Value))}, nil
		}
		end := r.Offset + int64(len(r.Value))
		if end < r.Offset || (r.MaxValueSize > 0 && end > r.MaxValueSize) {
			return nil, RMWResult{}, command.ErrValueTooLong
		}
		n := max(end, int64(len(cur.Value)))
		v := make([]byte, n)
		copy(v, cur.Value)
		copy(v[r.Offset:], r.Value)
		return put(v), RMWResult{N: n}, nil
	case command.RMWRename:
		if !exists {
			return nil, RMWResult{}, command.ErrNoSuchKey
		}
		if string(r.Key) == string(r.Dest) {
			if r.OnlyIfAbsent {
				return nil, RMWResult{N: 0}, nil
			}
			return nil, RMWResult{N: 1}, nil
		}
		if r.OnlyIfAbsent {
			if d, taken := get(r.Dest); taken && !d.Expired(r.Now) {
				return nil, RMWResult{N: 0}, nil
			}
		}
		return []engine.Op{
			{Type: engine.OpDelete, Key: r.Key},
			{Type: engine.OpPut, Key: r.Dest, Value: cur.Value, Deadline: cur.Deadline, Lease: cur.Lease, Now: r.Now},
		}, RMWResult{N: 1}, nil
	}
	return nil, RMWResult{}, command.Invalid(errUnknownRMW)
}

type rmwError string

func (e rmwError) Error() string { return string(e) }

const errUnknownRMW = rmwError("unknown read-modify-write operation")

// ParseInt reads a value as Redis does for INCR: an optional minus sign and
// decimal digits, no leading zeros, spaces or plus sign, within int64.
func ParseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := b[0] == '-'
	d := b
	if neg {
		d = b[1:]
	}
	if len(d) == 0 || d[0] < '1' || d[0] > '9' {
		return 0, false
	}
	var u uint64
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
		if u > (math.MaxUint64-9)/10 {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true //nolint:gosec // bounded above
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

// ParseFloat reads a value as Redis does for INCRBYFLOAT: a decimal or
// exponent number with no surrounding spaces; NaN and infinities are
// refused.
func ParseFloat(b []byte) (float64, bool) {
	if len(b) == 0 || len(b) > 5120 || b[0] == ' ' || b[len(b)-1] == ' ' {
		return 0, false
	}
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E') {
			return 0, false
		}
	}
	x, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, false
	}
	return x, true
}

// FormatFloat writes x as INCRBYFLOAT stores it: the shortest decimal that
// reads back as x, without an exponent.
func FormatFloat(x float64) []byte {
	if x == 0 {
		return []byte("0")
	}
	return strconv.AppendFloat(nil, x, 'f', -1, 64)
}

// FormatInt writes n in decimal.
func FormatInt(n int64) []byte { return strconv.AppendInt(nil, n, 10) }
