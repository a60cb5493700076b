package service

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/kvdb/kvdb/internal/core"
)

// Expiry over the Redis protocol: SET's EX, PX, EXAT, PXAT and KEEPTTL,
// SETEX, PSETEX, EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, TTL, PTTL,
// EXPIRETIME, PEXPIRETIME and PERSIST, with Redis's replies. Each goes
// through core like every other command, with its permission checks: a
// deadline is a write (EXPIRE and PERSIST are read-modify-writes of the
// key, computed when applied), TTL a read.

// expireArg reads an expiry argument: a positive integer of the unit.
func expireArg(a []byte, cmd string) (int64, string) {
	n, err := strconv.ParseInt(string(a), 10, 64)
	if err != nil {
		return 0, "ERR value is not an integer or out of range"
	}
	if n <= 0 {
		return 0, "ERR invalid expire time in '" + cmd + "' command"
	}
	return n, ""
}

// expiryFrom turns an expiry option's value into a TTL from now (EX
// seconds, PX milliseconds) or a deadline in unix milliseconds (EXAT unix
// seconds, PXAT unix milliseconds). A deadline in the past hides the key
// at once, and the leader's next round expires it.
func expiryFrom(opt string, n int64) (ttl time.Duration, at int64, ok bool) {
	const maxMs = math.MaxInt64 / int64(time.Millisecond)
	switch opt {
	case "EX":
		if n > maxMs/1000 {
			return 0, 0, false
		}
		return time.Duration(max(n, 1)) * time.Second, 0, true
	case "PX":
		if n > maxMs {
			return 0, 0, false
		}
		return time.Duration(max(n, 1)) * time.Millisecond, 0, true
	case "EXAT":
		if n > maxMs/1000 {
			return 0, 0, false
		}
		return 0, max(n*1000, 1), true
	case "PXAT":
		return 0, max(n, 1), true
	}
	return 0, 0, false
}

// setTTL is SET with an expiry option and no NX, XX or GET: a put with a
// TTL, or, with KEEPTTL, a read-modify-write keeping the key's deadline.
func (c *respConn) setTTL(key, value []byte, o setOptions) {
	if o.keepTTL {
		c.submitRMW(c.s.core.PrepareSetKeepTTL(c.ctx, key, value))('+')
		return
	}
	w, err := c.s.core.PreparePutOptions(c.ctx, key, value, false, core.PutOptions{TTL: o.ttl, At: o.at})
	if err != nil {
		c.fail(err)
		return
	}
	c.submit(w, '+', time.Now())
}

// cmdSetEx is SETEX key seconds value and PSETEX key milliseconds value.
func (c *respConn) cmdSetEx(args [][]byte) {
	name, opt := "setex", "EX"
	if isArg(args[0], "psetex") {
		name, opt = "psetex", "PX"
	}
	n, msg := expireArg(args[2], name)
	if msg != "" {
		c.errorLine(msg)
		return
	}
	ttl, _, ok := expiryFrom(opt, n)
	if !ok {
		c.errorLine("ERR invalid expire time in '" + name + "' command")
		return
	}
	c.setTTL(args[1], args[3], setOptions{ttl: ttl})
}

// cmdExpire is EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT key n [NX|XX|GT|LT]:
// 1 when the deadline was set, 0 when the key does not exist or the
// condition does not hold. A deadline in the past hides the key at once;
// the leader deletes it in its next round.
func (c *respConn) cmdExpire(args [][]byte) {
	name := strings.ToLower(string(args[0]))
	n, err := strconv.ParseInt(string(args[2]), 10, 64)
	if err != nil {
		c.errorLine("ERR value is not an integer or out of range")
		return
	}
	var nx, xx, gt, lt bool
	for _, a := range args[3:] {
		switch {
		case isArg(a, "NX"):
			nx = true
		case isArg(a, "XX"):
			xx = true
		case isArg(a, "GT"):
			gt = true
		case isArg(a, "LT"):
			lt = true
		default:
			c.errorLine("ERR Unsupported option " + string(a))
			return
		}
	}
	// Redis's checks, in its order.
	cond := core.ExpireAlways
	switch {
	case nx && (xx || gt || lt):
		c.errorLine("ERR NX and XX, GT or LT options at the same time are not compatible")
		return
	case gt && lt:
		c.errorLine("ERR GT and LT options at the same time are not compatible")
		return
	case xx && lt:
		c.errorLine("ERR XX and LT options together are not supported (docs/redis.md)")
		return
	case nx:
		cond = core.ExpireNX
	case gt:
		// GT already needs a deadline to compare with: XX GT is GT.
		cond = core.ExpireGT
	case lt:
		cond = core.ExpireLT
	case xx:
		cond = core.ExpireXX
	}
	// A relative expiry into the future rounds its start up, so the key
	// never goes early (core.DeadlineAfter); one at or before now stays
	// due at once.
	now := time.Now().UnixMilli()
	if n > 0 {
		now = core.DeadlineAfter(0)
	}
	var at int64
	const maxMs = math.MaxInt64 / int64(time.Millisecond)
	if (isArg(args[0], "expire") || isArg(args[0], "expireat")) && n < math.MinInt64/1000 {
		// Redis's bound: seconds it cannot turn into milliseconds.
		c.errorLine("ERR invalid expire time in '" + name + "' command")
		return
	}
	switch {
	case isArg(args[0], "expire"):
		if n > maxMs/1000 || n < -maxMs/1000 {
			at = -1
		} else {
			at = now + n*1000
		}
	case isArg(args[0], "pexpire"):
		at = now + n
	case isArg(args[0], "expireat"):
		if n > maxMs/1000 || n < -maxMs/1000 {
			at = -1
		} else {
			at = n * 1000
		}
	default:
		at = n
	}
	if at < 0 && n > 0 {
		c.errorLine("ERR invalid expire time in '" + name + "' command")
		return
	}
	c.submitRMW(c.s.core.PrepareExpire(c.ctx, args[1], max(at, 1), cond))('i')
}

// cmdPersist removes a key's TTL: 1 when it had one.
func (c *respConn) cmdPersist(args [][]byte) {
	c.submitRMW(c.s.core.PreparePersist(c.ctx, args[1]))('i')
}

// cmdTTL is TTL, PTTL, EXPIRETIME and PEXPIRETIME: -2 when the key does
// not exist, -1 when it has no TTL; else the seconds or milliseconds left,
// or the deadline as a unix time.
func (c *respConn) cmdTTL(args [][]byte) {
	key := args[1]
	if err := c.s.core.CheckGet(c.ctx, key); err != nil {
		c.fail(err)
		return
	}
	if err := c.waitRead(); err != nil {
		c.fail(err)
		return
	}
	kv, _, err := c.s.core.ReadGet(key)
	switch {
	case err != nil:
		c.int(-2)
		return
	case kv.Deadline == 0:
		c.int(-1)
		return
	}
	left := max(kv.Deadline-time.Now().UnixMilli(), 0)
	switch {
	case isArg(args[0], "ttl"):
		c.int((left + 500) / 1000)
	case isArg(args[0], "pttl"):
		c.int(left)
	case isArg(args[0], "expiretime"):
		c.int((kv.Deadline + 500) / 1000) // rounded, as Redis's TTL and EXPIRETIME are
	default:
		c.int(kv.Deadline)
	}
}
