package service

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/kvdb/kvdb/internal/auth"
	"github.com/kvdb/kvdb/internal/core"
	"github.com/kvdb/kvdb/internal/resp"
)

// The connection and server commands of the Redis protocol.

// respCompatVersion is the Redis version HELLO and INFO report, for
// clients that look at it: the command set is Redis 7's where it exists.
const respCompatVersion = "7.2.0"

func (c *respConn) cmdPing(args [][]byte) {
	if len(args) > 2 {
		c.errorLine("ERR wrong number of arguments for 'ping' command")
		return
	}
	if len(args) == 2 {
		c.bulk(args[1])
		return
	}
	c.simple("PONG")
}

func (c *respConn) cmdEcho(args [][]byte) { c.bulk(args[1]) }

func (c *respConn) cmdTime(args [][]byte) { c.timeReply() }

func (c *respConn) cmdSelect(args [][]byte) {
	if string(args[1]) == "0" {
		c.ok()
		return
	}
	c.errorLine("ERR DB index is out of range: KVDB has one keyspace, database 0 (docs/redis.md)")
}

func (c *respConn) cmdQuit(args [][]byte) {
	c.ok()
	c.quit = true
}

func (c *respConn) cmdReadOnly(args [][]byte) {
	c.serializable = true
	c.ok()
}

func (c *respConn) cmdReadWrite(args [][]byte) {
	c.serializable = false
	c.ok()
}

// publish copies what CLIENT LIST shows of the connection, for other
// connections to read under mu.
func (c *respConn) publish() {
	c.mu.Lock()
	c.shownUser, c.shownResp3 = c.user, c.resp3
	c.mu.Unlock()
}

func (c *respConn) cmdReset(args [][]byte) {
	c.multi, c.watches, c.serializable, c.resp3 = nil, nil, false, false
	c.user, c.ctx = "", c.base
	c.setName("")
	c.publish()
	c.simple("RESET")
}

// login makes the connection user name when the password is right. Like
// a binary-protocol AUTH it opens a session: it lasts until the user is
// removed or its password changes, after which every command checked
// against the user answers -NOAUTH until the next AUTH.
func (c *respConn) login(name, password []byte) bool {
	from := ""
	if a := c.c.RemoteAddr(); a != nil {
		from = hostOf(a.String())
	}
	var ctx context.Context
	var err error
	if len(name) == 0 && c.s.core.AuthEnabled() {
		// No user has an empty name (OpenSession would take the password
		// for a token).
		err = auth.ErrAuthFailed
	} else {
		ctx, err = c.s.core.OpenSession(c.base, string(name), string(password), from)
	}
	if err != nil {
		switch core.CodeOf(err) {
		case core.FailedPrecondition:
			c.errorLine("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
		case core.Unauthenticated, core.NotFound:
			c.errorLine("WRONGPASS invalid username-password pair or user is disabled.")
		default:
			c.fail(err)
		}
		return false
	}
	c.user, c.ctx = string(name), ctx
	c.publish()
	return true
}

func (c *respConn) cmdAuth(args [][]byte) {
	switch len(args) {
	case 2:
		if c.login([]byte("default"), args[1]) {
			c.ok()
		}
	case 3:
		if c.login(args[1], args[2]) {
			c.ok()
		}
	default:
		c.errorLine("ERR syntax error")
	}
}

func (c *respConn) cmdHello(args [][]byte) {
	proto := 0
	if len(args) > 1 {
		v, err := strconv.Atoi(string(args[1]))
		if err != nil {
			c.errorLine("ERR Protocol version is not an integer or out of range")
			return
		}
		if v != 2 && v != 3 {
			c.errorLine("NOPROTO unsupported protocol version")
			return
		}
		proto = v
	}
	var name []byte
	setName := false
	for i := 2; i < len(args); i++ {
		switch {
		case isArg(args[i], "AUTH") && i+2 < len(args):
			if !c.login(args[i+1], args[i+2]) {
				return
			}
			i += 2
		case isArg(args[i], "SETNAME") && i+1 < len(args):
			name, setName = args[i+1], true
			i++
		default:
			c.errorLine("ERR Syntax error in HELLO option '" + truncate(args[i], 64) + "'")
			return
		}
	}
	if c.user == "" && c.s.core.AuthEnabled() {
		c.errorLine("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	if setName {
		if !validClientName(name) {
			c.errorLine("ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		c.setName(string(name))
	}
	if proto != 0 {
		c.resp3 = proto == 3
		c.publish()
	}
	role := "master"
	if c.s.node.Status().State != raft.StateLeader {
		role = "replica"
	}
	c.out = resp.AppendMap(c.out, 7, c.resp3)
	c.bulkString("server")
	c.bulkString("redis")
	c.bulkString("version")
	c.bulkString(respCompatVersion)
	c.bulkString("proto")
	c.int(int64(map[bool]int{false: 2, true: 3}[c.resp3]))
	c.bulkString("id")
	c.int(int64(c.id))
	c.bulkString("mode")
	c.bulkString("standalone")
	c.bulkString("role")
	c.bulkString(role)
	c.bulkString("modules")
	c.array(0)
}

func validClientName(b []byte) bool {
	for _, ch := range b {
		if ch < '!' || ch > '~' {
			return false
		}
	}
	return true
}

func (c *respConn) setName(n string) {
	c.mu.Lock()
	c.name = n
	c.mu.Unlock()
}

func (c *respConn) clientLine() string {
	c.mu.Lock()
	name, user, resp3 := c.name, c.shownUser, c.shownResp3
	c.mu.Unlock()
	addr, laddr := "", ""
	if a := c.c.RemoteAddr(); a != nil {
		addr = a.String()
	}
	if a := c.c.LocalAddr(); a != nil {
		laddr = a.String()
	}
	if user == "" {
		user = "default"
	}
	proto := 2
	if resp3 {
		proto = 3
	}
	return fmt.Sprintf("id=%d addr=%s laddr=%s fd=0 name=%s age=%d idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=client user=%s redir=-1 resp=%d lib-name= lib-ver=",
		c.id, addr, laddr, name, int64(time.Since(c.start).Seconds()), user, proto)
}

func (c *respConn) cmdClient(args [][]byte) {
	sub := strings.ToLower(string(args[1]))
	switch sub {
	case "getname", "id", "info":
		if len(args) != 2 {
			c.errorLine("ERR wrong number of arguments for 'client|" + sub + "' command")
			return
		}
	}
	switch sub {
	case "setname":
		if len(args) != 3 {
			c.errorLine("ERR wrong number of arguments for 'client|setname' command")
			return
		}
		if !validClientName(args[2]) {
			c.errorLine("ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		c.setName(string(args[2]))
		c.ok()
	case "getname":
		c.mu.Lock()
		n := c.name
		c.mu.Unlock()
		if n == "" {
			c.null()
		} else {
			c.bulkString(n)
		}
	case "id":
		c.int(int64(c.id))
	case "info":
		c.out = resp.AppendVerbatim(c.out, c.clientLine()+"\n", c.resp3)
	case "list":
		if err := c.s.core.RequireRoot(c.ctx); err != nil {
			c.fail(err)
			return
		}
		var b strings.Builder
		conns := c.r.clients()
		sort.Slice(conns, func(i, j int) bool { return conns[i].id < conns[j].id })
		for _, o := range conns {
			b.WriteString(o.clientLine())
			b.WriteByte('\n')
		}
		c.out = resp.AppendVerbatim(c.out, b.String(), c.resp3)
	case "setinfo", "no-evict", "no-touch":
		c.ok()
	default:
		c.errorLine("ERR unknown subcommand '" + truncate(args[1], 64) + "'. Try CLIENT HELP.")
	}
}

// commandInfo appends COMMAND INFO's entry for cmd.
func (c *respConn) commandInfo(cmd *respCommand) {
	c.array(10)
	c.bulkString(cmd.name)
	c.int(int64(cmd.arity))
	flags := []string{"fast"}
	if cmd.write {
		flags = []string{"write"}
	} else if cmd.firstKey > 0 {
		flags = []string{"readonly", "fast"}
	}
	c.out = resp.AppendSet(c.out, len(flags), c.resp3)
	for _, f := range flags {
		c.simple(f)
	}
	c.int(int64(cmd.firstKey))
	c.int(int64(cmd.lastKey))
	c.int(int64(cmd.step))
	for range 4 { // ACL categories, tips, key specs, subcommands
		c.array(0)
	}
}

func (c *respConn) cmdCommand(args [][]byte) {
	names := make([]string, 0, len(respCommands))
	for n := range respCommands {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(args) == 1 {
		c.array(len(names))
		for _, n := range names {
			c.commandInfo(respCommands[n])
		}
		return
	}
	switch strings.ToLower(string(args[1])) {
	case "count":
		if len(args) != 2 {
			c.errorLine("ERR wrong number of arguments for 'command|count' command")
			return
		}
		c.int(int64(len(respCommands)))
	case "info":
		if len(args) > 2 {
			names = names[:0]
			for _, a := range args[2:] {
				names = append(names, strings.ToLower(string(a)))
			}
		}
		c.array(len(names))
		for _, n := range names {
			if cmd := respCommands[n]; cmd != nil {
				c.commandInfo(cmd)
			} else {
				c.null()
			}
		}
	case "docs":
		if len(args) > 2 {
			names = names[:0]
			for _, a := range args[2:] {
				if respCommands[strings.ToLower(string(a))] != nil {
					names = append(names, strings.ToLower(string(a)))
				}
			}
		}
		c.out = resp.AppendMap(c.out, len(names), c.resp3)
		for _, n := range names {
			c.bulkString(n)
			c.out = resp.AppendMap(c.out, 2, c.resp3)
			c.bulkString("summary")
			c.bulkString("")
			c.bulkString("group")
			c.bulkString("string")
		}
	default:
		c.errorLine("ERR unknown subcommand '" + truncate(args[1], 64) + "'. Try COMMAND HELP.")
	}
}

// configValues are what CONFIG GET answers: the settings clients and
// redis-benchmark ask about, with KVDB's values.
func (c *respConn) configValues() [][2]string {
	l := c.s.core.Limits()
	policy := "allkeys-lru"
	if c.s.cfg.EvictionPolicy != "" {
		policy = string(c.s.cfg.EvictionPolicy)
	}
	return [][2]string{
		{"appendonly", "yes"},
		{"appendfsync", "everysec"},
		{"databases", "1"},
		{"maxclients", strconv.Itoa(c.s.cfg.MaxConnections)},
		{"maxmemory", strconv.FormatInt(c.s.cfg.MaxMemory, 10)},
		{"maxmemory-policy", policy},
		{"proto-max-bulk-len", strconv.Itoa(l.MaxValueSize)},
		{"save", ""},
		{"timeout", strconv.Itoa(int(c.r.cfg.IdleTimeout.Seconds()))},
		{"cluster-enabled", "no"},
	}
}

func (c *respConn) cmdConfig(args [][]byte) {
	if err := c.s.core.RequireRoot(c.ctx); err != nil {
		c.fail(err)
		return
	}
	switch strings.ToLower(string(args[1])) {
	case "get":
		if len(args) < 3 {
			c.errorLine("ERR wrong number of arguments for 'config|get' command")
			return
		}
		var hits [][2]string
		for _, kv := range c.configValues() {
			for _, p := range args[2:] {
				if globMatch([]byte(strings.ToLower(string(p))), []byte(kv[0])) {
					if !bytes.ContainsAny(p, "[*?") {
						kv[0] = string(p) // a plain name comes back as given, as in Redis
					}
					hits = append(hits, kv)
					break
				}
			}
		}
		c.out = resp.AppendMap(c.out, len(hits), c.resp3)
		for _, kv := range hits {
			c.bulkString(kv[0])
			c.bulkString(kv[1])
		}
	case "set":
		c.errorLine("ERR CONFIG SET is not supported: KVDB is configured with kvdb-server's flags (docs/redis.md)")
	case "resetstat":
		c.ok()
	default:
		c.errorLine("ERR unknown subcommand '" + truncate(args[1], 64) + "'. Try CONFIG HELP.")
	}
}

func (c *respConn) cmdInfo(args [][]byte) {
	// The node's state, like STATS: the root role when auth is on.
	if err := c.s.core.RequireRoot(c.ctx); err != nil {
		c.fail(err)
		return
	}
	all := len(args) == 1
	want := map[string]bool{}
	for _, a := range args[1:] {
		s := strings.ToLower(string(a))
		if s == "all" || s == "everything" || s == "default" {
			all = true
		}
		want[s] = true
	}
	show := func(s string) bool { return all || want[s] }
	var b strings.Builder
	section := func(name string) {
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString("# " + name + "\r\n")
	}
	kv := func(k string, v any) { fmt.Fprintf(&b, "%s:%v\r\n", k, v) }
	st := c.s.node.Status()
	if show("server") {
		section("Server")
		kv("redis_version", respCompatVersion)
		kv("kvdb_version", c.s.cfg.Version)
		kv("redis_mode", "standalone")
		kv("os", "linux")
		kv("process_id", os.Getpid())
		kv("run_id", fmt.Sprintf("%040x", c.s.cfg.MemberID))
		kv("node_id", c.s.cfg.NodeID)
		kv("tcp_port", portOf(c.c.LocalAddr().String()))
		kv("uptime_in_seconds", int64(time.Since(c.s.ops.start).Seconds()))
	}
	if show("clients") {
		section("Clients")
		kv("connected_clients", c.r.connCount())
		kv("total_client_connections", c.s.conns.Load())
		kv("maxclients", c.s.cfg.MaxConnections)
	}
	if show("memory") {
		section("Memory")
		kv("used_memory", c.s.store.MemoryUsage())
		kv("maxmemory", c.s.cfg.MaxMemory)
		kv("maxmemory_policy", c.configValues()[5][1])
		kv("evicted_keys", c.s.store.EvictedKeys())
	}
	if show("stats") {
		section("Stats")
		kv("total_commands_processed", c.s.ops.total.Load())
		kv("rejected_calls", c.s.core.Rejected())
		kv("evicted_keys", c.s.store.EvictedKeys())
		kv("expired_keys", c.s.store.ExpiredKeys())
	}
	if show("replication") {
		section("Replication")
		role := "master"
		if st.State != raft.StateLeader {
			role = "slave"
		}
		kv("role", role)
		kv("raft_state", st.State.String())
		kv("raft_term", st.Term)
		kv("raft_leader", c.s.memberName(st.Leader))
		kv("raft_commit_index", st.Commit)
		kv("raft_applied_index", st.Applied)
		followers := 0
		if st.State == raft.StateLeader {
			followers = max(len(c.s.node.Members())-1, 0)
		}
		kv("connected_slaves", followers)
	}
	if show("keyspace") {
		section("Keyspace")
		if n := c.s.store.Len(); n > 0 {
			// avg_ttl is an estimate in Redis too; 0 stands for "not estimated".
			kv("db0", fmt.Sprintf("keys=%d,expires=%d,avg_ttl=0", n, c.s.store.KeysWithDeadline()))
		}
	}
	c.out = resp.AppendVerbatim(c.out, b.String(), c.resp3)
}

func portOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return addr[i+1:]
	}
	return addr
}
