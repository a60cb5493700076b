package service

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/kvdb/kvdb/internal/core"
	"github.com/kvdb/kvdb/internal/fsm"
)

// MULTI/EXEC/WATCH on core's optimistic transactions. MULTI queues
// commands; EXEC opens an interactive transaction, checks that no WATCHed
// key changed since WATCH (else EXEC answers a null array, as Redis does),
// runs the queued commands inside it (reads see the transaction's own
// writes) and commits them as one raft entry. A commit refused because a
// key the transaction read changed meanwhile (not a watched one) runs the
// queue again from the start, a bounded number of times: Redis's EXEC never
// fails for a conflict it did not ask about.

// respMulti is an open MULTI: the queued commands, copied.
type respMulti struct {
	cmds  []*respCommand
	args  [][][]byte
	bytes int
	dirty bool
}

const errSetExpiryInMulti = "ERR SET with an expiry is not supported inside MULTI (docs/redis.md)"

// hasExpiryOption reports whether SET's options name an expiry.
func hasExpiryOption(opts [][]byte) bool {
	for _, a := range opts {
		if isArg(a, "EX") || isArg(a, "PX") || isArg(a, "EXAT") || isArg(a, "PXAT") || isArg(a, "KEEPTTL") {
			return true
		}
	}
	return false
}

// maxExecAttempts bounds the runs of one EXEC's queue on conflicts.
const maxExecAttempts = 16

func (c *respConn) cmdMulti(args [][]byte) {
	if c.multi != nil {
		c.errorLine("ERR MULTI calls can not be nested")
		return
	}
	c.multi = &respMulti{}
	c.ok()
}

func (c *respConn) queue(cmd *respCommand, args [][]byte) {
	m := c.multi
	if !cmd.txn {
		c.errorLine("ERR " + cmd.name + " is not supported inside MULTI (docs/redis.md)")
		m.dirty = true
		return
	}
	if cmd.name == "set" && hasExpiryOption(args[3:]) {
		// Refused now, so that EXEC aborts as a whole: at EXEC it would
		// fail alone while the rest of the queue commits.
		c.errorLine(errSetExpiryInMulti)
		m.dirty = true
		return
	}
	// A queued argument costs its bytes and its slice header (an empty
	// one costs the header alone).
	n := 24 * (len(args) + 1)
	for _, a := range args {
		n += len(a)
	}
	if m.bytes+n > c.s.core.Limits().MaxRequestSize || len(m.cmds) >= c.s.core.Limits().MaxTxnOps {
		c.errorLine("ERR the transaction is over the max-request-size or max-txn-ops limit")
		m.dirty = true
		return
	}
	m.bytes += n
	cp := make([][]byte, len(args))
	for i, a := range args {
		cp[i] = bytes.Clone(a)
	}
	m.cmds = append(m.cmds, cmd)
	m.args = append(m.args, cp)
	c.simple("QUEUED")
}

func (c *respConn) cmdDiscard(args [][]byte) {
	if c.multi == nil {
		c.errorLine("ERR DISCARD without MULTI")
		return
	}
	c.multi, c.watches = nil, nil
	c.ok()
}

func (c *respConn) cmdWatch(args [][]byte) {
	if c.multi != nil {
		c.errorLine("ERR WATCH inside MULTI is not allowed")
		return
	}
	for _, k := range args[1:] {
		if err := c.s.core.CheckGet(c.ctx, k); err != nil {
			c.fail(err)
			return
		}
	}
	if err := c.waitRead(); err != nil {
		c.fail(err)
		return
	}
	if c.watches == nil {
		c.watches = make(map[string]int64)
	}
	for _, k := range args[1:] {
		if _, ok := c.watches[string(k)]; ok {
			continue
		}
		kv, _, _ := c.s.core.ReadGet(k)
		c.watches[string(k)] = kv.ModRevision
	}
	c.ok()
}

func (c *respConn) cmdUnwatch(args [][]byte) {
	c.watches = nil
	c.ok()
}

func (c *respConn) cmdExec(args [][]byte) {
	m, watches := c.multi, c.watches
	if m == nil {
		c.errorLine("ERR EXEC without MULTI")
		return
	}
	c.multi, c.watches = nil, nil
	if m.dirty {
		c.errorLine("EXECABORT Transaction discarded because of previous errors.")
		return
	}
	start := time.Now()
	defer c.s.core.Observe(core.RESP, core.OpCommit, start)
	outer := c.out
	for range maxExecAttempts {
		c.out = nil
		aborted, err := c.runExec(m, watches)
		replies := c.out
		c.out = outer
		switch {
		case errors.Is(err, core.ErrTxnConflict):
			continue
		case err != nil:
			c.fail(err)
		case aborted:
			c.out = append(c.out, "*-1\r\n"...)
			if c.resp3 {
				c.out = append(c.out[:len(c.out)-5], "_\r\n"...)
			}
		default:
			c.array(len(m.cmds))
			c.out = append(c.out, replies...)
		}
		return
	}
	c.errorLine("ERR transaction conflict: the keys it read kept changing; retry")
}

// runExec runs the queue once in a new transaction. aborted: a watched key
// changed. The replies are left in c.out.
func (c *respConn) runExec(m *respMulti, watches map[string]int64) (aborted bool, err error) {
	b, err := c.s.core.Begin(c.ctx, "")
	if err != nil {
		return false, err
	}
	t := &respTxn{c: c, id: b.ID}
	committed := false
	defer func() {
		if !committed {
			_ = c.s.core.Rollback(c.ctx, t.id)
		}
	}()
	for k, mod := range watches {
		kv, _, err := c.s.core.TxnGet(c.ctx, t.id, []byte(k))
		if err != nil && !errors.Is(err, core.ErrKeyNotFound) {
			return false, err
		}
		if kv.ModRevision != mod {
			return true, nil
		}
	}
	limit := c.s.core.Limits().MaxResponseBytes
	for i, cmd := range m.cmds {
		t.run(cmd, m.args[i])
		if len(c.out) > limit {
			// Not committed: the transaction is rolled back.
			return false, errors.New(respReplyTooLarge("exec", limit) + "; nothing was applied")
		}
	}
	committed = true
	_, err = c.s.core.Commit(c.ctx, t.id)
	return false, err
}

// respTxn runs queued commands inside one transaction.
type respTxn struct {
	c  *respConn
	id string
}

// get reads key in the transaction: the value, whether it exists.
func (t *respTxn) get(key []byte) ([]byte, bool, error) {
	kv, err := t.read(key)
	return kv.Value, err == nil && kv.Key != nil, err
}

// read reads key in the transaction: the key-value, zero when absent.
func (t *respTxn) read(key []byte) (core.KeyValue, error) {
	kv, _, err := t.c.s.core.TxnGet(t.c.ctx, t.id, key)
	if errors.Is(err, core.ErrKeyNotFound) {
		return core.KeyValue{}, nil
	}
	return kv, err
}

// put stores value in key as SET does, dropping its TTL.
func (t *respTxn) put(key, value []byte) error { return t.c.s.core.TxnPut(t.c.ctx, t.id, key, value) }

// modify reads key for a read-modify-write (INCR, APPEND, SETRANGE, ...)
// and returns its value, whether it exists, and the put that stores the
// new value while keeping the key's TTL, as those commands do.
func (t *respTxn) modify(key []byte) ([]byte, bool, func([]byte) error, error) {
	kv, err := t.read(key)
	put := func(value []byte) error { return t.c.s.core.TxnPutKeep(t.c.ctx, t.id, key, kv, value) }
	return kv.Value, err == nil && kv.Key != nil, put, err
}

// run answers one queued command into c.out; errors are that command's
// reply, as in Redis.
func (t *respTxn) run(cmd *respCommand, args [][]byte) {
	c := t.c
	if err := t.exec(cmd, args); err != nil {
		c.fail(err)
	}
}

func (t *respTxn) exec(cmd *respCommand, args [][]byte) error {
	c := t.c
	switch cmd.name {
	case "get":
		v, ok, err := t.get(args[1])
		if err != nil {
			return err
		}
		if ok {
			c.bulk(v)
		} else {
			c.null()
		}
	case "set", "setnx", "getset":
		o := setOptions{nx: cmd.name == "setnx", get: cmd.name == "getset"}
		if cmd.name == "set" {
			var msg string
			// An expiry option was refused when queued (queue).
			if o, msg = parseSetOptions(args[3:]); msg != "" {
				c.errorLine(msg)
				return nil
			}
		}
		if cmd.name == "set" && !o.nx && !o.xx && !o.get {
			// A plain SET reads nothing: it needs only the right to write.
			if err := t.put(args[1], args[2]); err != nil {
				return err
			}
			c.ok()
			return nil
		}
		old, exists, err := t.get(args[1])
		if err != nil {
			return err
		}
		do := !(o.nx && exists) && !(o.xx && !exists)
		if do {
			if err := t.put(args[1], args[2]); err != nil {
				return err
			}
		}
		switch {
		case cmd.name == "setnx":
			c.bool(do)
		case o.get && exists:
			c.bulk(old)
		case o.get:
			c.null()
		case do:
			c.ok()
		default:
			c.null()
		}
	case "getdel":
		v, ok, err := t.get(args[1])
		if err != nil {
			return err
		}
		if !ok {
			c.null()
			return nil
		}
		if err := c.s.core.TxnDelete(c.ctx, t.id, args[1]); err != nil {
			return err
		}
		c.bulk(v)
	case "mget":
		vals := make([][]byte, len(args)-1)
		found := make([]bool, len(args)-1)
		size, limit := 0, c.s.core.Limits().MaxResponseBytes
		for i, k := range args[1:] {
			v, ok, err := t.get(k)
			if err != nil {
				return err
			}
			vals[i], found[i] = v, ok
			if size += len(v); size > limit {
				c.errorLine("ERR " + respReplyTooLarge("mget", limit))
				return nil
			}
		}
		c.array(len(vals))
		for i, v := range vals {
			if found[i] {
				c.bulk(v)
			} else {
				c.null()
			}
		}
	case "mset", "msetnx":
		if len(args)%2 != 1 {
			c.errorLine("ERR wrong number of arguments for '" + cmd.name + "' command")
			return nil
		}
		if cmd.name == "msetnx" {
			for i := 1; i < len(args); i += 2 {
				_, ok, err := t.get(args[i])
				if err != nil {
					return err
				}
				if ok {
					c.int(0)
					return nil
				}
			}
		}
		for i := 1; i < len(args); i += 2 {
			if err := t.put(args[i], args[i+1]); err != nil {
				return err
			}
		}
		if cmd.name == "msetnx" {
			c.int(1)
		} else {
			c.ok()
		}
	case "del", "unlink", "exists":
		n := int64(0)
		for _, k := range args[1:] {
			_, ok, err := t.get(k)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			n++
			if cmd.name != "exists" {
				if err := c.s.core.TxnDelete(c.ctx, t.id, k); err != nil {
					return err
				}
			}
		}
		c.int(n)
	case "incr", "decr", "incrby", "decrby":
		delta, msg := incrDelta(args)
		if msg != "" {
			c.errorLine(msg)
			return nil
		}
		v, ok, put, err := t.modify(args[1])
		if err != nil {
			return err
		}
		var n int64
		if ok {
			if n, ok = fsm.ParseInt(v); !ok {
				return core.ErrNotInteger
			}
		}
		if (delta > 0 && n > math.MaxInt64-delta) || (delta < 0 && n < math.MinInt64-delta) {
			return core.ErrOverflow
		}
		n += delta
		if err := put(fsm.FormatInt(n)); err != nil {
			return err
		}
		c.int(n)
	case "incrbyfloat":
		d, ok := fsm.ParseFloat(args[2])
		if !ok {
			c.errorLine(floatArgError(args[2]))
			return nil
		}
		v, exists, put, err := t.modify(args[1])
		if err != nil {
			return err
		}
		var x float64
		if exists {
			if x, ok = fsm.ParseFloat(v); !ok {
				return core.ErrNotFloat
			}
		}
		x += d
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return core.ErrNaN
		}
		nv := fsm.FormatFloat(x)
		if err := put(nv); err != nil {
			return err
		}
		c.bulk(nv)
	case "append":
		v, _, put, err := t.modify(args[1])
		if err != nil {
			return err
		}
		nv := append(bytes.Clone(v), args[2]...)
		if err := put(nv); err != nil {
			return err
		}
		c.int(int64(len(nv)))
	case "strlen":
		v, _, err := t.get(args[1])
		if err != nil {
			return err
		}
		c.int(int64(len(v)))
	case "getrange", "substr":
		start, ok1 := fsm.ParseInt(args[2])
		end, ok2 := fsm.ParseInt(args[3])
		if !ok1 || !ok2 {
			c.errorLine(errNotInteger)
			return nil
		}
		v, _, err := t.get(args[1])
		if err != nil {
			return err
		}
		c.bulk(substr(v, start, end))
	case "setrange":
		off, ok := fsm.ParseInt(args[2])
		if !ok || off < 0 {
			c.errorLine("ERR offset is out of range")
			return nil
		}
		v, _, put, err := t.modify(args[1])
		if err != nil {
			return err
		}
		if len(args[3]) == 0 {
			c.int(int64(len(v)))
			return nil
		}
		end := off + int64(len(args[3]))
		if end > int64(c.s.core.Limits().MaxValueSize) {
			return core.ErrValueTooLong
		}
		nv := make([]byte, max(end, int64(len(v))))
		copy(nv, v)
		copy(nv[off:], args[3])
		if err := put(nv); err != nil {
			return err
		}
		c.int(int64(len(nv)))
	case "type":
		_, ok, err := t.get(args[1])
		if err != nil {
			return err
		}
		if ok {
			c.simple("string")
		} else {
			c.simple("none")
		}
	case "ping":
		if len(args) > 1 {
			c.bulk(args[1])
		} else {
			c.simple("PONG")
		}
	case "echo":
		c.bulk(args[1])
	case "unwatch":
		// Queued, as Redis queues it: EXEC has checked the watched keys
		// already, and ends every WATCH.
		c.ok()
	case "time":
		c.timeReply()
	default:
		c.errorLine("ERR " + cmd.name + " is not supported inside MULTI")
	}
	return nil
}

func (c *respConn) timeReply() {
	now := time.Now()
	c.array(2)
	c.bulkString(strconv.FormatInt(now.Unix(), 10))
	c.bulkString(strconv.FormatInt(int64(now.Nanosecond()/1000), 10))
}
