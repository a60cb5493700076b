package service

import (
	"bytes"
	"container/list"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvdb/kvdb/internal/core"
	"github.com/kvdb/kvdb/internal/engine"
	"github.com/kvdb/kvdb/internal/fsm"
)

// respCommand is one command of the table.
type respCommand struct {
	name string
	// arity is Redis's: the number of arguments with the name, negative
	// for "at least".
	arity int
	fn    func(c *respConn, args [][]byte)
	// op is the operation STATS records it under (0: not recorded).
	op core.Op
	// async: the command may answer after settle (a plain write); every
	// other command waits for the connection's pending writes first.
	async bool
	// txn: the command may be queued in MULTI.
	txn bool
	// inline: an event loop may run the command itself (resp_evloop_linux.go):
	// a read of keys, or a write that only goes to the coalescer.
	inline bool
	// noAuth: allowed before AUTH while authentication is enabled.
	noAuth bool
	// keys: the arguments that are keys (first, last, step), for COMMAND.
	firstKey, lastKey, step int
	write                   bool
}

// errTTLCombo answers SET with an expiry option together with NX, XX or
// GET where it cannot be served as one operation.
const errTTLCombo = "ERR KEEPTTL together with NX, XX or GET is not supported (docs/redis.md)"

var respCommands map[string]*respCommand

func init() {
	list := []*respCommand{
		{name: "get", arity: 2, fn: (*respConn).cmdGet, op: core.OpGet, txn: true, firstKey: 1, lastKey: 1, step: 1, inline: true},
		{name: "set", arity: -3, fn: (*respConn).cmdSet, op: core.OpPut, async: true, txn: true, firstKey: 1, lastKey: 1, step: 1, write: true, inline: true},
		{name: "setnx", arity: 3, fn: (*respConn).cmdSetNX, op: core.OpExecute, txn: true, firstKey: 1, lastKey: 1, step: 1, write: true},
		{name: "getset", arity: 3, fn: (*respConn).cmdGetSet, op: core.OpExecute, txn: true, firstKey: 1, lastKey: 1, step: 1, write: true},
		{name: "getdel", arity: 2, fn: (*respConn).cmdGetDel, op: core.OpExecute, txn: true, firstKey: 1, lastKey: 1, step: 1, write: true},
		{name: "mget", arity: -2, fn: (*respConn).cmdMGet, op: core.OpGet, txn: true, firstKey: 1, lastKey: -1, step: 1, inline: true},
		{name: "mset", arity: -3, fn: (*respConn).cmdMSet, op: core.OpBatch, async: true, txn: true, firstKey: 1, lastKey: -1, step: 2, write: true, inline: true},
		{name: "msetnx", arity: -3, fn: (*respConn).cmdMSetNX, op: core.OpExecute, txn: true, firstKey: 1, lastKey: -1, step: 2, write: true},
		{name: "del", arity: -2, fn: (*respConn).cmdDel, op: core.OpDelete, async: true, txn: true, firstKey: 1, lastKey: -1, step: 1, write: true, inline: true},
		{name: "unlink", arity: -2, fn: (*respConn).cmdDel, op: core.OpDelete, async: true, txn: true, firstKey: 1, lastKey: -1, step: 1, write: true, inline: true},
		{name: "exists", arity: -2, fn: (*respConn).cmdExists, op: core.OpGet, txn: true, firstKey: 1, lastKey: -1, step: 1, inline: true},
		{name: "incr", arity: 2, fn: (*respConn).cmdIncr, op: core.OpRMW, async: true, txn: true, firstKey: 1, lastKey: 1, step: 1, write: true, inline: true},
		{name: "decr", arity: 2, fn: (*respConn).cmdIncr, op: core.OpRMW, async: true, txn: true, firstKey: 1, lastKey: 1, step: 1, write: true, inline: true},
		{name: "incrby", arity: 3, fn: (*respConn).cmdIncr, op: core.OpRMW, async: true, txn: true, firstKey: 1, lastKey: 1, step: 1, write: true, inline: true},
		{name: "decrby", arity: 3, fn: (*respConn).cmdIncr, op: core.OpRMW, async: true, txn: true, firstKey: 1, lastKey: 1, step: 1, write: true, inline: true},
		{name: "incrbyfloat", arity: 3, fn: (*respConn).cmdIncrByFloat, op: core.OpRMW, async: true, txn: true, firstKey: 1, lastKey: 1, step: 1, write: true},
		{name: "append", arity: 3, fn: (*respConn).cmdAppend, op: core.OpRMW, async: true, txn: true, firstKey: 1, lastKey: 1, step: 1, write: true},
		{name: "strlen", arity: 2, fn: (*respConn).cmdStrlen, op: core.OpGet, txn: true, firstKey: 1, lastKey: 1, step: 1, inline: true},
		{name: "getrange", arity: 4, fn: (*respConn).cmdGetRange, op: core.OpGet, txn: true, firstKey: 1, lastKey: 1, step: 1},
		{name: "substr", arity: 4, fn: (*respConn).cmdGetRange, op: core.OpGet, txn: true, firstKey: 1, lastKey: 1, step: 1},
		{name: "setrange", arity: 4, fn: (*respConn).cmdSetRange, op: core.OpRMW, async: true, txn: true, firstKey: 1, lastKey: 1, step: 1, write: true},
		{name: "type", arity: 2, fn: (*respConn).cmdType, op: core.OpGet, txn: true, firstKey: 1, lastKey: 1, step: 1},
		{name: "keys", arity: 2, fn: (*respConn).cmdKeys, op: core.OpRange},
		{name: "scan", arity: -2, fn: (*respConn).cmdScan, op: core.OpRange},
		{name: "dbsize", arity: 1, fn: (*respConn).cmdDBSize, op: core.OpRange},
		{name: "randomkey", arity: 1, fn: (*respConn).cmdRandomKey, op: core.OpRange},
		{name: "rename", arity: 3, fn: (*respConn).cmdRename, op: core.OpRMW, async: true, firstKey: 1, lastKey: 2, step: 1, write: true},
		{name: "renamenx", arity: 3, fn: (*respConn).cmdRename, op: core.OpRMW, async: true, firstKey: 1, lastKey: 2, step: 1, write: true},
		{name: "flushdb", arity: -1, fn: (*respConn).cmdFlush, op: core.OpDelete, write: true},
		{name: "flushall", arity: -1, fn: (*respConn).cmdFlush, op: core.OpDelete, write: true},
		{name: "multi", arity: 1, fn: (*respConn).cmdMulti},
		{name: "exec", arity: 1, fn: (*respConn).cmdExec},
		{name: "discard", arity: 1, fn: (*respConn).cmdDiscard},
		{name: "watch", arity: -2, fn: (*respConn).cmdWatch, firstKey: 1, lastKey: -1, step: 1},
		{name: "unwatch", arity: 1, fn: (*respConn).cmdUnwatch, txn: true},
		{name: "ping", arity: -1, fn: (*respConn).cmdPing, txn: true, inline: true},
		{name: "echo", arity: 2, fn: (*respConn).cmdEcho, txn: true, inline: true},
		{name: "hello", arity: -1, fn: (*respConn).cmdHello, noAuth: true},
		{name: "auth", arity: -2, fn: (*respConn).cmdAuth, noAuth: true},
		{name: "select", arity: 2, fn: (*respConn).cmdSelect},
		{name: "info", arity: -1, fn: (*respConn).cmdInfo},
		{name: "config", arity: -2, fn: (*respConn).cmdConfig},
		{name: "client", arity: -2, fn: (*respConn).cmdClient},
		{name: "command", arity: -1, fn: (*respConn).cmdCommand},
		{name: "time", arity: 1, fn: (*respConn).cmdTime, txn: true},
		{name: "quit", arity: -1, fn: (*respConn).cmdQuit, noAuth: true},
		{name: "reset", arity: 1, fn: (*respConn).cmdReset, noAuth: true},
		{name: "readonly", arity: 1, fn: (*respConn).cmdReadOnly},
		{name: "readwrite", arity: 1, fn: (*respConn).cmdReadWrite},
	}
	for _, name := range []string{"expire", "pexpire", "expireat", "pexpireat"} {
		list = append(list, &respCommand{name: name, arity: -3, fn: (*respConn).cmdExpire, op: core.OpRMW, async: true,
			firstKey: 1, lastKey: 1, step: 1, write: true})
	}
	for _, name := range []string{"ttl", "pttl", "expiretime", "pexpiretime"} {
		list = append(list, &respCommand{name: name, arity: 2, fn: (*respConn).cmdTTL, op: core.OpGet, firstKey: 1, lastKey: 1, step: 1})
	}
	list = append(list,
		&respCommand{name: "persist", arity: 2, fn: (*respConn).cmdPersist, op: core.OpRMW, async: true, firstKey: 1, lastKey: 1, step: 1, write: true},
		&respCommand{name: "setex", arity: 4, fn: (*respConn).cmdSetEx, op: core.OpPut, async: true, firstKey: 1, lastKey: 1, step: 1, write: true},
		&respCommand{name: "psetex", arity: 4, fn: (*respConn).cmdSetEx, op: core.OpPut, async: true, firstKey: 1, lastKey: 1, step: 1, write: true},
	)
	respCommands = make(map[string]*respCommand, len(list))
	for _, cmd := range list {
		respCommands[cmd.name] = cmd
	}
}

// arityOK reports whether n arguments (the name included) fit the
// command's arity.
func (cmd *respCommand) arityOK(n int) bool {
	if cmd.arity > 0 {
		return n == cmd.arity
	}
	return n >= -cmd.arity
}

// lookupCommand finds a command by name, in any case, without allocating.
func lookupCommand(name []byte) *respCommand {
	var buf [16]byte
	if len(name) > len(buf) {
		return nil
	}
	for i, ch := range name {
		if ch >= 'A' && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		buf[i] = ch
	}
	return respCommands[string(buf[:len(name)])]
}

// dispatch runs one command.
func (c *respConn) dispatch(args [][]byte) { c.run(lookupCommand(args[0]), args) }

// run runs one command, cmd (nil: unknown) named by args[0].
func (c *respConn) run(cmd *respCommand, args [][]byte) {
	c.s.metrics.respCommand(cmd)
	if cmd == nil {
		c.unknownCommand(args)
		if c.multi != nil {
			c.multi.dirty = true
		}
		return
	}
	if !cmd.arityOK(len(args)) {
		c.errorLine("ERR wrong number of arguments for '" + cmd.name + "' command")
		if c.multi != nil {
			c.multi.dirty = true
		}
		return
	}
	if c.multi != nil && !isTxnControl(cmd.name) {
		c.queue(cmd, args)
		return
	}
	if !cmd.async {
		c.settle()
	}
	if !cmd.noAuth && c.user == "" && c.s.core.AuthEnabled() {
		c.errorLine("NOAUTH Authentication required.")
		return
	}
	if err := c.s.core.Enter(true); err != nil {
		c.fail(err)
		return
	}
	start := time.Now()
	c.op, c.submitted = cmd.op, false
	cmd.fn(c, args)
	if c.submitted {
		return // the write's completion leaves and observes
	}
	c.s.core.Leave(true)
	if c.op != 0 {
		c.s.core.Observe(core.RESP, c.op, start)
	}
}

func (c *respConn) unknownCommand(args [][]byte) {
	var b strings.Builder
	b.WriteString("ERR unknown command '")
	b.WriteString(truncate(args[0], 128))
	b.WriteString("', with args beginning with: ")
	for _, a := range args[1:min(len(args), 8)] {
		b.WriteString("'")
		b.WriteString(truncate(a, 128))
		b.WriteString("' ")
	}
	c.errorLine(b.String())
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

func isTxnControl(name string) bool {
	switch name {
	case "exec", "discard", "multi", "watch", "quit", "reset":
		return true
	}
	return false
}

func isArg(a []byte, word string) bool { return strings.EqualFold(string(a), word) }

// Strings.

func (c *respConn) cmdGet(args [][]byte) {
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
	if err != nil {
		c.null()
		return
	}
	c.bulk(kv.Value)
}

// setOptions are SET's options: ttl is set by EX or PX, at (unix
// milliseconds) by EXAT or PXAT.
type setOptions struct {
	nx, xx, get bool
	keepTTL     bool
	ttl         time.Duration
	at          int64
}

func parseSetOptions(args [][]byte) (setOptions, string) {
	var o setOptions
	expiry := 0
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case isArg(a, "NX"):
			o.nx = true
		case isArg(a, "XX"):
			o.xx = true
		case isArg(a, "GET"):
			o.get = true
		case isArg(a, "KEEPTTL"):
			o.keepTTL = true
			expiry++
		case isArg(a, "EX"), isArg(a, "PX"), isArg(a, "EXAT"), isArg(a, "PXAT"):
			if i+1 == len(args) {
				return o, "ERR syntax error"
			}
			n, msg := expireArg(args[i+1], "set")
			if msg != "" {
				return o, msg
			}
			ttl, at, ok := expiryFrom(strings.ToUpper(string(a)), n)
			if !ok {
				return o, "ERR invalid expire time in 'set' command"
			}
			o.ttl, o.at = ttl, at
			expiry++
			i++
		default:
			return o, "ERR syntax error"
		}
	}
	if (o.nx && o.xx) || expiry > 1 {
		return o, "ERR syntax error"
	}
	if o.keepTTL && (o.nx || o.xx || o.get) {
		return o, errTTLCombo
	}
	return o, ""
}

func (c *respConn) cmdSet(args [][]byte) {
	key, value := args[1], args[2]
	if len(args) == 3 {
		w, err := c.s.core.PreparePut(c.ctx, key, value, false)
		if err != nil {
			c.fail(err)
			return
		}
		c.submit(w, '+', time.Now())
		return
	}
	o, msg := parseSetOptions(args[3:])
	if msg != "" {
		c.errorLine(msg)
		return
	}
	if !o.nx && !o.xx && !o.get {
		c.setTTL(key, value, o)
		return
	}
	c.settle()
	c.setCond(key, value, o)
}

// setCond is SET with NX, XX or GET: one conditional transaction.
func (c *respConn) setCond(key, value []byte, o setOptions) {
	c.op = core.OpExecute
	req := core.ExecuteRequest{}
	switch {
	case o.nx:
		req.Compares = []core.Compare{{Key: key, Target: engine.CompareVersion, Op: engine.CompareEqual, Number: 0}}
	case o.xx:
		req.Compares = []core.Compare{{Key: key, Target: engine.CompareVersion, Op: engine.CompareGreater, Number: 0}}
	}
	put := core.TxnOp{Type: core.TxnPut, Key: key, Value: value, TTL: o.ttl, At: o.at}
	get := core.TxnOp{Type: core.TxnRange, Key: key}
	if o.get {
		req.Success = []core.TxnOp{get, put}
		req.Failure = []core.TxnOp{get}
	} else {
		req.Success = []core.TxnOp{put}
	}
	res, err := c.s.core.Execute(c.ctx, req)
	switch {
	case err != nil:
		c.fail(err)
	case o.get:
		c.firstValue(res)
	case res.Succeeded:
		c.ok()
	default:
		c.null()
	}
}

// firstValue replies with the value the first operation (a range of one
// key) read, or null.
func (c *respConn) firstValue(res core.ExecuteResult) {
	if len(res.Responses) > 0 && len(res.Responses[0].KVs) > 0 {
		c.bulk(res.Responses[0].KVs[0].Value)
		return
	}
	c.null()
}

func (c *respConn) cmdSetNX(args [][]byte) {
	res, err := c.s.core.Execute(c.ctx, core.ExecuteRequest{
		Compares: []core.Compare{{Key: args[1], Target: engine.CompareVersion, Op: engine.CompareEqual, Number: 0}},
		Success:  []core.TxnOp{{Type: core.TxnPut, Key: args[1], Value: args[2]}},
	})
	if err != nil {
		c.fail(err)
		return
	}
	c.bool(res.Succeeded)
}

func (c *respConn) cmdGetSet(args [][]byte) {
	res, err := c.s.core.Execute(c.ctx, core.ExecuteRequest{Success: []core.TxnOp{
		{Type: core.TxnRange, Key: args[1]}, {Type: core.TxnPut, Key: args[1], Value: args[2]}}})
	if err != nil {
		c.fail(err)
		return
	}
	c.firstValue(res)
}

func (c *respConn) cmdGetDel(args [][]byte) {
	res, err := c.s.core.Execute(c.ctx, core.ExecuteRequest{Success: []core.TxnOp{
		{Type: core.TxnRange, Key: args[1]}, {Type: core.TxnDelete, Key: args[1]}}})
	if err != nil {
		c.fail(err)
		return
	}
	c.firstValue(res)
}

func (c *respConn) cmdMGet(args [][]byte) {
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
	mark := len(c.out)
	c.array(len(args) - 1)
	for _, k := range args[1:] {
		if kv, _, err := c.s.core.ReadGet(k); err == nil {
			c.bulk(kv.Value)
		} else {
			c.null()
		}
		if len(c.out)-mark > c.s.core.Limits().MaxResponseBytes {
			c.out = c.out[:mark]
			c.errorLine("ERR " + respReplyTooLarge("mget", c.s.core.Limits().MaxResponseBytes))
			return
		}
	}
}

// respBulkSize is the size of a bulk string reply of n bytes: "$n\r\n",
// the bytes, "\r\n".
func respBulkSize(n int) int { return len(strconv.Itoa(n)) + n + 5 }

// respReplyTooLarge is the error of a command whose reply would hold more
// than the max-response-bytes limit: the reply is never built in full.
func respReplyTooLarge(cmd string, limit int) string {
	return "the reply of '" + cmd + "' would be over the max-response-bytes limit of " + strconv.Itoa(limit) + " bytes: ask for fewer keys"
}

func (c *respConn) cmdMSet(args [][]byte) {
	if len(args)%2 != 1 {
		c.errorLine("ERR wrong number of arguments for 'mset' command")
		return
	}
	ops := make([]core.BatchOp, 0, len(args)/2)
	for i := 1; i < len(args); i += 2 {
		ops = append(ops, core.BatchOp{Key: args[i], Value: args[i+1]})
	}
	w, err := c.s.core.PrepareBatch(c.ctx, ops)
	if err != nil {
		c.fail(err)
		return
	}
	c.submit(w, '+', time.Now())
}

func (c *respConn) cmdMSetNX(args [][]byte) {
	if len(args)%2 != 1 {
		c.errorLine("ERR wrong number of arguments for 'msetnx' command")
		return
	}
	var req core.ExecuteRequest
	for i := 1; i < len(args); i += 2 {
		req.Compares = append(req.Compares, core.Compare{Key: args[i], Target: engine.CompareVersion, Op: engine.CompareEqual, Number: 0})
		req.Success = append(req.Success, core.TxnOp{Type: core.TxnPut, Key: args[i], Value: args[i+1]})
	}
	res, err := c.s.core.Execute(c.ctx, req)
	if err != nil {
		c.fail(err)
		return
	}
	c.bool(res.Succeeded)
}

func (c *respConn) cmdDel(args [][]byte) {
	var w core.Write
	var err error
	// Keys already past their deadline are not counted (the delete carries
	// the node's clock while any key is), as Redis does not count them.
	if len(args) == 2 {
		w, err = c.s.core.PrepareDelete(c.ctx, args[1], nil, false, false)
	} else {
		ops := make([]core.BatchOp, len(args)-1)
		for i, k := range args[1:] {
			ops[i] = core.BatchOp{Delete: true, Key: k}
		}
		w, err = c.s.core.PrepareBatch(c.ctx, ops)
	}
	if err != nil {
		c.fail(err)
		return
	}
	c.submit(w, ':', time.Now())
}

func (c *respConn) cmdExists(args [][]byte) {
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
	n := int64(0)
	for _, k := range args[1:] {
		if _, _, err := c.s.core.ReadGet(k); err == nil {
			n++
		}
	}
	c.int(n)
}

const errNotInteger = "ERR value is not an integer or out of range"

// incrDelta is the delta INCR, DECR, INCRBY or DECRBY adds.
func incrDelta(args [][]byte) (int64, string) {
	name := strings.ToLower(string(args[0]))
	switch name {
	case "incr":
		return 1, ""
	case "decr":
		return -1, ""
	}
	n, ok := fsm.ParseInt(args[2])
	if !ok {
		return 0, errNotInteger
	}
	if name == "decrby" {
		if n == math.MinInt64 {
			return 0, "ERR decrement would overflow"
		}
		n = -n
	}
	return n, ""
}

func (c *respConn) cmdIncr(args [][]byte) {
	delta, msg := incrDelta(args)
	if msg != "" {
		c.errorLine(msg)
		return
	}
	c.submitRMW(c.s.core.PrepareIncrBy(c.ctx, args[1], delta))('i')
}

// submitRMW submits a prepared read-modify-write, answered in order by
// settle as kind says; a preparation error is answered at once, after the
// writes before it.
func (c *respConn) submitRMW(w core.Write, err error) func(kind byte) {
	return func(kind byte) {
		if err != nil {
			c.fail(err)
			return
		}
		c.submit(w, kind, time.Now())
	}
}

// floatArgError is Redis's answer to an increment fsm.ParseFloat refused:
// an infinite one (inf, -inf, or too large for a float) would make the
// result infinite; anything else is not a float.
func floatArgError(b []byte) string {
	if x, err := strconv.ParseFloat(string(b), 64); math.IsInf(x, 0) && (err == nil || errors.Is(err, strconv.ErrRange)) {
		return "ERR increment would produce NaN or Infinity"
	}
	return "ERR value is not a valid float"
}

func (c *respConn) cmdIncrByFloat(args [][]byte) {
	d, ok := fsm.ParseFloat(args[2])
	if !ok {
		c.errorLine(floatArgError(args[2]))
		return
	}
	c.submitRMW(c.s.core.PrepareIncrByFloat(c.ctx, args[1], d))('f')
}

func (c *respConn) cmdAppend(args [][]byte) {
	c.submitRMW(c.s.core.PrepareAppend(c.ctx, args[1], args[2]))('i')
}

// getValue reads one key linearizably: its value and whether it exists,
// or false with the error already replied.
func (c *respConn) getValue(key []byte) ([]byte, bool, bool) {
	if err := c.s.core.CheckGet(c.ctx, key); err != nil {
		c.fail(err)
		return nil, false, false
	}
	if err := c.waitRead(); err != nil {
		c.fail(err)
		return nil, false, false
	}
	kv, _, err := c.s.core.ReadGet(key)
	return kv.Value, err == nil, true
}

func (c *respConn) cmdStrlen(args [][]byte) {
	v, _, ok := c.getValue(args[1])
	if ok {
		c.int(int64(len(v)))
	}
}

// substr is GETRANGE's slice of v: negative indexes count from the end,
// both ends inclusive.
func substr(v []byte, start, end int64) []byte {
	n := int64(len(v))
	if start < 0 && end < 0 && start > end {
		return nil
	}
	if start < 0 {
		start = max(n+start, 0)
	}
	if end < 0 {
		end = max(n+end, 0)
	}
	end = min(end, n-1)
	if n == 0 || start > end {
		return nil
	}
	return v[start : end+1]
}

func (c *respConn) cmdGetRange(args [][]byte) {
	start, ok1 := fsm.ParseInt(args[2])
	end, ok2 := fsm.ParseInt(args[3])
	if !ok1 || !ok2 {
		c.errorLine(errNotInteger)
		return
	}
	v, _, ok := c.getValue(args[1])
	if ok {
		c.bulk(substr(v, start, end))
	}
}

func (c *respConn) cmdSetRange(args [][]byte) {
	off, ok := fsm.ParseInt(args[2])
	if !ok {
		c.errorLine(errNotInteger)
		return
	}
	if off < 0 {
		c.errorLine("ERR offset is out of range")
		return
	}
	c.submitRMW(c.s.core.PrepareSetRange(c.ctx, args[1], off, args[3]))('i')
}

// Keys.

func (c *respConn) cmdType(args [][]byte) {
	_, exists, ok := c.getValue(args[1])
	if !ok {
		return
	}
	if exists {
		c.simple("string")
	} else {
		c.simple("none")
	}
}

func (c *respConn) cmdRename(args [][]byte) {
	nx := isArg(args[0], "renamenx")
	kind := byte('+')
	if nx {
		kind = 'b'
	}
	c.submitRMW(c.s.core.PrepareRename(c.ctx, args[1], args[2], nx))(kind)
}

// scanPage reads up to limit keys from `from` (inclusive; nil: the first
// key) to end of the key space or of prefix, keys only, and calls fn with
// each; it returns the key after the last one read, or nil at the end.
func (c *respConn) scanPage(from, prefix []byte, limit int64, fn func(key []byte)) ([]byte, error) {
	r := core.RangeRequest{Key: from, End: []byte{0}, Limit: limit, KeysOnly: true, Serializable: true}
	if len(prefix) > 0 {
		r.End = engine.PrefixEnd(prefix)
		if len(from) == 0 {
			r.Key = prefix
		}
	}
	if len(r.Key) == 0 {
		r.Key = nil
	}
	res, err := c.s.core.Range(c.ctx, r)
	if err != nil {
		return nil, err
	}
	for _, kv := range res.KVs {
		fn(kv.Key)
	}
	if !res.More || len(res.KVs) == 0 {
		return nil, nil
	}
	last := res.KVs[len(res.KVs)-1].Key
	return append(bytes.Clone(last), 0), nil
}

func (c *respConn) cmdKeys(args [][]byte) {
	pattern := args[1]
	if err := c.waitRead(); err != nil {
		c.fail(err)
		return
	}
	prefix := globPrefix(pattern)
	// The reply is bounded like every other read's: a key space larger
	// than max-response-bytes is listed with SCAN, a page at a time.
	limit := c.s.core.Limits().MaxResponseBytes
	var keys [][]byte
	var from []byte
	size := 0
	// Pages run to the end of the key space: each is bounded in bytes too,
	// so it may hold fewer than the 1,000 keys asked for.
	for size <= limit {
		next, err := c.scanPage(from, prefix, 1000, func(k []byte) {
			if size <= limit && globMatch(pattern, k) {
				keys = append(keys, k)
				size += respBulkSize(len(k))
			}
		})
		if err != nil {
			c.fail(err)
			return
		}
		if next == nil {
			break
		}
		from = next
	}
	if size > limit {
		c.errorLine("ERR " + respReplyTooLarge("keys", limit) + " (SCAN lists them a page at a time)")
		return
	}
	c.array(len(keys))
	for _, k := range keys {
		c.bulk(k)
	}
}

// scanCursors maps the SCAN cursors handed out by this node's RESP
// connections to the key each resumes at: a key, so a cursor stays valid
// whatever is written meanwhile, and it works on any connection to this
// node (a client's connection pool may send each page on another one). A
// cursor can be used again (a client retrying a page); the least recently
// used ones are forgotten beyond maxScanCursors or maxScanCursorBytes of
// keys, and then answer "invalid cursor". Cursor numbers are random, so
// one client cannot guess another's; reading a page checks the reader's
// own permissions either way.
type scanCursors struct {
	mu    sync.Mutex
	m     map[uint64]*list.Element // of *scanCursor
	lru   list.List                // front: most recently used
	bytes int
}

type scanCursor struct {
	id  uint64
	key []byte
}

const (
	maxScanCursors     = 100_000
	maxScanCursorBytes = 64 << 20
)

// put records a cursor resuming at key and returns its number (never 0).
func (sc *scanCursors) put(key []byte) uint64 {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.m == nil {
		sc.m = make(map[uint64]*list.Element)
	}
	id := uint64(0)
	for id == 0 || sc.m[id] != nil {
		id = rand.Uint64() >> 1 // positive as a signed number too
	}
	sc.m[id] = sc.lru.PushFront(&scanCursor{id: id, key: key})
	sc.bytes += len(key)
	for len(sc.m) > maxScanCursors || sc.bytes > maxScanCursorBytes {
		old := sc.lru.Back().Value.(*scanCursor)
		sc.lru.Remove(sc.lru.Back())
		delete(sc.m, old.id)
		sc.bytes -= len(old.key)
	}
	return id
}

// get returns the key cursor id resumes at.
func (sc *scanCursors) get(id uint64) ([]byte, bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	e, ok := sc.m[id]
	if !ok {
		return nil, false
	}
	sc.lru.MoveToFront(e)
	return e.Value.(*scanCursor).key, true
}

func (c *respConn) cmdScan(args [][]byte) {
	cursor, err := strconv.ParseUint(string(args[1]), 10, 64)
	if err != nil {
		c.errorLine("ERR invalid cursor")
		return
	}
	var pattern []byte
	count := int64(10)
	onlyStrings := true
	for i := 2; i < len(args); i += 2 {
		if i+1 >= len(args) {
			c.errorLine("ERR syntax error")
			return
		}
		switch {
		case isArg(args[i], "MATCH"):
			pattern = args[i+1]
		case isArg(args[i], "COUNT"):
			n, ok := fsm.ParseInt(args[i+1])
			if !ok {
				c.errorLine(errNotInteger)
				return
			}
			if n < 1 {
				c.errorLine("ERR syntax error")
				return
			}
			count = min(n, 10_000)
		case isArg(args[i], "TYPE"):
			onlyStrings = isArg(args[i+1], "string")
		default:
			c.errorLine("ERR syntax error")
			return
		}
	}
	// A pattern's literal prefix bounds the keys read (and the permission
	// needed).
	prefix := globPrefix(pattern)
	var from []byte
	if cursor != 0 {
		var ok bool
		if from, ok = c.r.cursors.get(cursor); !ok {
			c.errorLine("ERR invalid cursor")
			return
		}
	}
	if err := c.waitRead(); err != nil {
		c.fail(err)
		return
	}
	var keys [][]byte
	next, err := c.scanPage(from, prefix, count, func(k []byte) {
		if onlyStrings && (pattern == nil || globMatch(pattern, k)) {
			keys = append(keys, k)
		}
	})
	if err != nil {
		c.fail(err)
		return
	}
	id := uint64(0)
	if next != nil {
		id = c.r.cursors.put(next)
	}
	c.array(2)
	c.bulkString(strconv.FormatUint(id, 10))
	c.array(len(keys))
	for _, k := range keys {
		c.bulk(k)
	}
}

func (c *respConn) cmdDBSize(args [][]byte) {
	if err := c.waitRead(); err != nil {
		c.fail(err)
		return
	}
	res, err := c.s.core.Range(c.ctx, core.RangeRequest{End: []byte{0}, CountOnly: true, Serializable: true})
	if err != nil {
		c.fail(err)
		return
	}
	c.int(res.Count)
}

func (c *respConn) cmdRandomKey(args [][]byte) {
	// Any key may come out: the user must be allowed to read them all.
	if err := c.s.core.CheckRange(c.ctx, &core.RangeRequest{Key: []byte{0}, End: []byte{0}}); err != nil {
		if errors.Is(err, core.ErrPermissionDenied) {
			c.errorLine("NOPERM RANDOMKEY needs the right to read every key")
		} else {
			c.fail(err)
		}
		return
	}
	if err := c.waitRead(); err != nil {
		c.fail(err)
		return
	}
	var start [8]byte
	for i := range start {
		start[i] = byte(rand.IntN(256)) //nolint:gosec // not a secret
	}
	var key []byte
	for _, from := range [][]byte{start[:1+rand.IntN(8)], nil} { //nolint:gosec // not a secret
		if _, err := c.scanPage(from, nil, 1, func(k []byte) { key = k }); err != nil {
			c.fail(err)
			return
		}
		if key != nil {
			c.bulk(key)
			return
		}
	}
	c.null()
}

func (c *respConn) cmdFlush(args [][]byte) {
	if len(args) > 2 {
		c.errorLine("ERR syntax error")
		return
	}
	for _, a := range args[1:] {
		if !isArg(a, "ASYNC") && !isArg(a, "SYNC") {
			c.errorLine("ERR syntax error")
			return
		}
	}
	if err := c.s.core.RequireRoot(c.ctx); err != nil {
		c.fail(err)
		return
	}
	if _, err := c.s.core.Delete(c.ctx, []byte{0}, []byte{0}, false, false); err != nil {
		c.fail(err)
		return
	}
	c.ok()
}

// globPrefix is the literal start of a glob pattern: the keys it can match
// all begin with it.
func globPrefix(p []byte) []byte {
	for i, ch := range p {
		if ch == '*' || ch == '?' || ch == '[' || ch == '\\' {
			return p[:i]
		}
	}
	return p
}

// globMatch is Redis's glob (stringmatchlen): * ? [abc] [^a-z] and \
// escapes, matched byte by byte, with Redis's answers on the edge cases: a
// class left open ("[a") runs to the end of the pattern, "[" alone matches
// nothing, a trailing \ is a literal backslash. Backtracking is over the
// last * only (every other token takes exactly one byte), so the work is
// bounded by len(p)*len(s).
func globMatch(p, s []byte) bool {
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(p) {
			switch p[pi] {
			case '*':
				starP, starS = pi, si
				pi++
				continue
			case '?':
				pi++
				si++
				continue
			case '[':
				if n, ok := matchClass(p[pi:], s[si]); ok {
					pi += n
					si++
					continue
				}
			case '\\':
				q := pi
				if pi+1 < len(p) {
					q = pi + 1
				}
				if p[q] == s[si] {
					pi = q + 1
					si++
					continue
				}
			default:
				if p[pi] == s[si] {
					pi++
					si++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		pi, si = starP+1, starS
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// matchClass matches ch against the class p starts with ('['), parsed as
// Redis parses it: the class's length in the pattern (to its ']', or to
// the pattern's end when there is none) and whether ch is in it. In
// "[a-z]" a range needs two bytes after its first, whatever they are, so
// "[a-]" is the range from ']' to 'a' left open.
func matchClass(p []byte, ch byte) (int, bool) {
	i := 1
	neg := i < len(p) && p[i] == '^'
	if neg {
		i++
	}
	match := false
	for {
		switch {
		case i >= len(p):
			// Left open: the class ends with the pattern.
			return len(p), match != neg
		case p[i] == '\\' && len(p)-i >= 2:
			i++
			if p[i] == ch {
				match = true
			}
		case p[i] == ']':
			return i + 1, match != neg
		case len(p)-i >= 3 && p[i+1] == '-':
			lo, hi := p[i], p[i+2]
			if lo > hi {
				lo, hi = hi, lo
			}
			if ch >= lo && ch <= hi {
				match = true
			}
			i += 2
		default:
			if p[i] == ch {
				match = true
			}
		}
		i++
	}
}
