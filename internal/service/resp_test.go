package service

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/wire"
)

func redisClient(t *testing.T, addr string, protocol int, mutate func(*redis.Options)) *redis.Client {
	t.Helper()
	o := &redis.Options{Addr: addr, Protocol: protocol, MaxRetries: -1, PoolSize: 4,
		DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	if mutate != nil {
		mutate(o)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

// must returns v, or panics (failing the test binary) on err: tests call
// it inline on client results.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func wantErr(t *testing.T, err error, prefix string) {
	t.Helper()
	if err == nil || !strings.HasPrefix(err.Error(), prefix) {
		t.Fatalf("error %v, want one starting with %q", err, prefix)
	}
}

// TestRESPGoRedis drives the string, key, server and transaction commands
// through go-redis, in RESP3 and RESP2.
func TestRESPGoRedis(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	for _, proto := range []int{3, 2} {
		t.Run(map[int]string{2: "RESP2", 3: "RESP3"}[proto], func(t *testing.T) {
			c := redisClient(t, n.addr, proto, nil)
			ctx := ctxT(t)
			if err := c.FlushDB(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			if must(c.Ping(ctx).Result()) != "PONG" {
				t.Fatal("ping")
			}
			must(c.Set(ctx, "a", "1", 0).Result())
			if v := must(c.Get(ctx, "a").Result()); v != "1" {
				t.Fatalf("get a = %q", v)
			}
			if _, err := c.Get(ctx, "missing").Result(); !errors.Is(err, redis.Nil) {
				t.Fatalf("missing: %v", err)
			}
			if v := must(c.Incr(ctx, "a").Result()); v != 2 {
				t.Fatalf("incr = %d", v)
			}
			if v := must(c.IncrBy(ctx, "a", 40).Result()); v != 42 {
				t.Fatalf("incrby = %d", v)
			}
			if v := must(c.DecrBy(ctx, "a", 2).Result()); v != 40 {
				t.Fatalf("decrby = %d", v)
			}
			if v := must(c.Decr(ctx, "new").Result()); v != -1 {
				t.Fatalf("decr new = %d", v)
			}
			if v := must(c.IncrByFloat(ctx, "f", 10.5).Result()); v != 10.5 {
				t.Fatalf("incrbyfloat = %v", v)
			}
			must(c.Set(ctx, "s", "hello", 0).Result())
			wantErr(t, c.Incr(ctx, "s").Err(), "ERR value is not an integer")
			wantErr(t, c.IncrByFloat(ctx, "s", 1).Err(), "ERR value is not a valid float")
			if v := must(c.Append(ctx, "s", " world").Result()); v != 11 {
				t.Fatalf("append = %d", v)
			}
			if v := must(c.StrLen(ctx, "s").Result()); v != 11 {
				t.Fatalf("strlen = %d", v)
			}
			if v := must(c.GetRange(ctx, "s", -5, -1).Result()); v != "world" {
				t.Fatalf("getrange = %q", v)
			}
			if v := must(c.SetRange(ctx, "s", 6, "WORLD").Result()); v != 11 {
				t.Fatalf("setrange = %d", v)
			}
			if v := must(c.Get(ctx, "s").Result()); v != "hello WORLD" {
				t.Fatalf("after setrange = %q", v)
			}
			if !must(c.SetNX(ctx, "nx", "1", 0).Result()) || must(c.SetNX(ctx, "nx", "2", 0).Result()) {
				t.Fatal("setnx")
			}
			if v := must(c.SetArgs(ctx, "nx", "3", redis.SetArgs{Mode: "XX", Get: true}).Result()); v != "1" {
				t.Fatalf("set xx get = %q", v)
			}
			if _, err := c.SetArgs(ctx, "absent", "3", redis.SetArgs{Mode: "XX"}).Result(); !errors.Is(err, redis.Nil) {
				t.Fatalf("set xx absent: %v", err)
			}
			must(c.Set(ctx, "ttl", "v", time.Hour).Result())
			if d := must(c.TTL(ctx, "ttl").Result()); d < 59*time.Minute || d > time.Hour {
				t.Fatalf("ttl = %v", d)
			}
			must(c.Del(ctx, "ttl").Result())
			if !must(c.Expire(ctx, "a", time.Hour).Result()) || must(c.PTTL(ctx, "a").Result()) <= 0 {
				t.Fatal("expire")
			}
			if v := must(c.GetSet(ctx, "nx", "4").Result()); v != "3" {
				t.Fatalf("getset = %q", v)
			}
			if v := must(c.GetDel(ctx, "nx").Result()); v != "4" || must(c.Exists(ctx, "nx").Result()) != 0 {
				t.Fatalf("getdel = %q", v)
			}
			must(c.MSet(ctx, "m1", "x", "m2", "y").Result())
			if v := must(c.MGet(ctx, "m1", "m2", "m3").Result()); v[0] != "x" || v[1] != "y" || v[2] != nil {
				t.Fatalf("mget = %v", v)
			}
			if must(c.MSetNX(ctx, "m1", "z", "m4", "w").Result()) || must(c.Exists(ctx, "m4").Result()) != 0 {
				t.Fatal("msetnx over an existing key")
			}
			if v := must(c.Del(ctx, "m1", "m2", "m3").Result()); v != 2 {
				t.Fatalf("del = %d", v)
			}
			if v := must(c.Type(ctx, "s").Result()); v != "string" {
				t.Fatalf("type = %q", v)
			}
			must(c.Rename(ctx, "s", "s2").Result())
			wantErr(t, c.Rename(ctx, "s", "s3").Err(), "ERR no such key")
			if must(c.RenameNX(ctx, "s2", "a").Result()) {
				t.Fatal("renamenx over an existing key")
			}
			keys := must(c.Keys(ctx, "*").Result())
			if strings.Join(keys, ",") != "a,f,new,s2" {
				t.Fatalf("keys = %v", keys)
			}
			if v := must(c.Keys(ctx, "[a-f]*").Result()); len(v) != 2 {
				t.Fatalf("keys [a-f]* = %v", v)
			}
			if v := must(c.DBSize(ctx).Result()); v != 4 {
				t.Fatalf("dbsize = %d", v)
			}
			var scanned []string
			var cursor uint64
			for range 100 {
				ks, next, err := c.Scan(ctx, cursor, "*", 1).Result()
				if err != nil {
					t.Fatal(err)
				}
				scanned = append(scanned, ks...)
				if cursor = next; cursor == 0 {
					break
				}
				// A write between pages does not invalidate the cursor.
				must(c.Set(ctx, "a", "again", 0).Result())
			}
			if strings.Join(scanned, ",") != "a,f,new,s2" {
				t.Fatalf("scan = %v", scanned)
			}
			if must(c.RandomKey(ctx).Result()) == "" {
				t.Fatal("randomkey")
			}
			wantErr(t, c.Do(ctx, "NOSUCH", "x").Err(), "ERR unknown command 'NOSUCH'")
			wantErr(t, c.Do(ctx, "SELECT", "1").Err(), "ERR DB index is out of range")
			wantErr(t, c.Do(ctx, "GET").Err(), "ERR wrong number of arguments for 'get' command")
			must(c.Do(ctx, "SELECT", "0").Result())
			if v := must(c.Info(ctx, "replication", "keyspace").Result()); !strings.Contains(v, "role:master") || !strings.Contains(v, "db0:keys=4") {
				t.Fatalf("info = %q", v)
			}
			if v := must(c.ConfigGet(ctx, "maxmemory*").Result()); v["maxmemory"] != "0" {
				t.Fatalf("config get = %v", v)
			}
			// A plain name comes back as it was asked for, a pattern's
			// matches under their own names, as in Redis 7.0.
			if v := must(c.ConfigGet(ctx, "MAXMEMORY").Result()); len(v) != 1 || v["MAXMEMORY"] != "0" {
				t.Fatalf("config get MAXMEMORY = %v", v)
			}
			must(c.Do(ctx, "CLIENT", "SETNAME", "tester").Result())
			if v := must(c.Do(ctx, "CLIENT", "GETNAME").Text()); v != "tester" {
				t.Fatalf("client getname = %q", v)
			}
			if v := must(c.ClientList(ctx).Result()); !strings.Contains(v, "name=tester") {
				t.Fatalf("client list = %q", v)
			}
			if v := must(c.Do(ctx, "COMMAND", "COUNT").Int()); v < 40 {
				t.Fatalf("command count = %d", v)
			}
			must(c.Do(ctx, "COMMAND", "DOCS", "get").Result())
			must(c.Do(ctx, "COMMAND", "INFO", "get", "nosuch").Result())
			must(c.Time(ctx).Result())
			if v := must(c.Echo(ctx, "hi").Result()); v != "hi" {
				t.Fatal("echo")
			}
			must(c.Do(ctx, "READONLY").Result())
			if v := must(c.Get(ctx, "a").Result()); v != "again" {
				t.Fatalf("serializable get = %q", v)
			}
		})
	}
}

// TestRESPPipelineAndTransactions: pipelined writes and reads answer in
// order; MULTI/EXEC applies atomically; a WATCHed key changed by another
// connection makes EXEC return nil.
func TestRESPPipelineAndTransactions(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	c := redisClient(t, n.addr, 3, nil)
	other := redisClient(t, n.addr, 2, nil)
	ctx := ctxT(t)

	cmds := must(c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range 200 {
			k := "p" + itoa(int64(i%20))
			p.Set(ctx, k, itoa(int64(i)), 0)
			p.Get(ctx, k)
			p.Incr(ctx, "counter")
		}
		p.MSet(ctx, "x", "1", "y", "2")
		p.MGet(ctx, "x", "y")
		return nil
	}))
	for i := range 200 {
		if v := cmds[3*i+1].(*redis.StringCmd).Val(); v != itoa(int64(i)) {
			t.Fatalf("pipelined get %d = %q", i, v)
		}
		if v := cmds[3*i+2].(*redis.IntCmd).Val(); v != int64(i+1) {
			t.Fatalf("pipelined incr %d = %d", i, v)
		}
	}
	if v := cmds[len(cmds)-1].(*redis.SliceCmd).Val(); v[0] != "1" || v[1] != "2" {
		t.Fatalf("mget = %v", v)
	}

	tx := must(c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "t1", "a", 0)
		p.Incr(ctx, "t2")
		p.Get(ctx, "t1")
		p.Append(ctx, "t1", "b")
		p.Del(ctx, "x")
		return nil
	}))
	if tx[2].(*redis.StringCmd).Val() != "a" || tx[3].(*redis.IntCmd).Val() != 2 || tx[4].(*redis.IntCmd).Val() != 1 {
		t.Fatalf("exec replies: %v", tx)
	}

	// WATCH, then a change from another connection, then EXEC: nil.
	err := c.Watch(ctx, func(tx *redis.Tx) error {
		v := must(tx.Get(ctx, "t2").Int())
		must(other.Set(ctx, "t2", "100", 0).Result())
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "t2", itoa(int64(v+1)), 0)
			return nil
		})
		return err
	}, "t2")
	if !errors.Is(err, redis.TxFailedErr) {
		t.Fatalf("exec after a watched change: %v", err)
	}
	if v := must(c.Get(ctx, "t2").Result()); v != "100" {
		t.Fatalf("t2 = %q", v)
	}
	// Unchanged: EXEC applies.
	err = c.Watch(ctx, func(tx *redis.Tx) error {
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error { p.IncrBy(ctx, "t2", 5); return nil })
		return err
	}, "t2")
	if err != nil || must(c.Get(ctx, "t2").Result()) != "105" {
		t.Fatalf("watch without a change: %v", err)
	}
	// An error queued discards the transaction.
	raw := dialRESP(t, n.addr)
	raw.send("MULTI", "SET k v", "GET", "EXEC")
	raw.expect("+OK", "+QUEUED", "-ERR wrong number of arguments for 'get' command", "-EXECABORT Transaction discarded because of previous errors.")
	// A SET with an expiry is refused when queued: the whole EXEC aborts
	// and the INCR before it is not applied.
	raw.send("MULTI", "INCR multi-ttl", "SET multi-lock me NX EX 10", "EXEC", "EXISTS multi-ttl multi-lock")
	raw.expect("+OK", "+QUEUED", "-"+errSetExpiryInMulti, "-EXECABORT Transaction discarded because of previous errors.", ":0")
	// Redis's texts for arguments it refuses.
	raw.send("INCRBYFLOAT f inf", "INCRBYFLOAT f 1e400", "INCRBYFLOAT f abc", "SCAN 0 COUNT 0", "SCAN 0 COUNT abc",
		"CLIENT ID x", "COMMAND COUNT x", "COMMAND INFO nonexistent", "FLUSHALL SYNC ASYNC")
	raw.expect("-ERR increment would produce NaN or Infinity", "-ERR increment would produce NaN or Infinity",
		"-ERR value is not a valid float", "-ERR syntax error", "-ERR value is not an integer or out of range",
		"-ERR wrong number of arguments for 'client|id' command", "-ERR wrong number of arguments for 'command|count' command",
		"*1", "$-1", "-ERR syntax error")
	raw.send("EXEC", "DISCARD", "MULTI", "MULTI", "DISCARD")
	raw.expect("-ERR EXEC without MULTI", "-ERR DISCARD without MULTI", "+OK", "-ERR MULTI calls can not be nested", "+OK")

	// Concurrent INCRs from many connections: none lost.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if err := other.Incr(ctx, "race").Err(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if v := must(c.Get(ctx, "race").Result()); v != "200" {
		t.Fatalf("race = %s", v)
	}
	// STATS and kvdb_operation_duration_seconds record RESP commands under
	// core's operation names.
	must(c.SetArgs(ctx, "nx-op", "1", redis.SetArgs{Mode: "NX"}).Result())
	must(c.Del(ctx, "nx-op").Result())
	n.srv.ops.mu.RLock()
	defer n.srv.ops.mu.RUnlock()
	for _, op := range []string{"GET", "PUT", "RMW", "BATCH", "EXECUTE", "COMMIT", "DELETE"} {
		if n.srv.ops.ops[opKey{"resp", op}] == nil {
			t.Errorf("no %s recorded for protocol resp", op)
		}
	}
}

// respConnT is a raw RESP connection speaking inline commands.
type respConnT struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRESP(t *testing.T, addr string) *respConnT {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &respConnT{t: t, c: c, br: bufio.NewReader(c)}
}

// send writes each command as a RESP array of its space-separated words.
func (r *respConnT) send(cmds ...string) {
	var b []byte
	for _, cmd := range cmds {
		words := strings.Fields(cmd)
		b = append(b, '*')
		b = append(b, itoa(int64(len(words)))...)
		b = append(b, "\r\n"...)
		for _, w := range words {
			b = append(b, '$')
			b = append(b, itoa(int64(len(w)))...)
			b = append(b, "\r\n"...)
			b = append(b, w...)
			b = append(b, "\r\n"...)
		}
	}
	r.raw(string(b))
}

func (r *respConnT) raw(s string) {
	r.t.Helper()
	if _, err := r.c.Write([]byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

// expect reads one line per want (bulk strings: the length line, then the
// data as the next want).
// respExchange is one command and the reply lines it must get.
type respExchange struct {
	cmd  string
	want []string
}

// exchange sends each command in turn and checks its reply, naming the
// command a failed check came after.
func (r *respConnT) exchange(exchanges []respExchange) {
	for _, x := range exchanges {
		r.send(x.cmd)
		func() {
			defer func() {
				if r.t.Failed() {
					r.t.Logf("after %q", x.cmd)
				}
			}()
			r.expect(x.want...)
		}()
	}
}

func (r *respConnT) expect(want ...string) {
	r.t.Helper()
	for _, w := range want {
		line, err := r.br.ReadString('\n')
		if err != nil {
			r.t.Fatalf("reading %q: %v", w, err)
		}
		if got := strings.TrimSuffix(line, "\r\n"); got != w {
			r.t.Fatalf("got %q, want %q", got, w)
		}
	}
}

func (r *respConnT) expectClose() {
	r.t.Helper()
	if _, err := io.Copy(io.Discard, r.br); err != nil {
		r.t.Fatalf("connection not closed cleanly: %v", err)
	}
}

// TestRESPMalformedInputCloses: protocol errors get -ERR and a close;
// declared sizes over the limits are refused before anything is allocated.
func TestRESPMalformedInputCloses(t *testing.T) {
	connModes(t, func(t *testing.T, mode func(*Config)) {
		n := startNode(t, t.TempDir(), func(c *Config) { mode(c); c.Limits.MaxValueSize = 1024 })
		for _, in := range []string{"*-5\r\n", "*1\r\n$99999999999\r\n", "*1\r\n$4097\r\n", "*1\r\n+PING\r\n", "*99999999999\r\n"} {
			r := dialRESP(t, n.addr)
			r.raw(in)
			line, err := r.br.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "-ERR Protocol error") {
				t.Fatalf("%q: %q %v", in, line, err)
			}
			r.expectClose()
		}
		// Unterminated bulk, then the client goes away: the server closes too.
		r := dialRESP(t, n.addr)
		r.raw("*2\r\n$3\r\nGET\r\n$100\r\nabc")
		_ = r.c.(*net.TCPConn).CloseWrite()
		r.expectClose()
		// Inline commands are for -resp-address: on the node's port the first
		// byte decides the protocol, and a RESP connection must send arrays.
		r = dialRESP(t, n.addr)
		r.send("PING")
		r.raw("PING\r\n")
		r.expect("+PONG", "-ERR Protocol error: expected '*', got 'P'")
		// A key over max-key-size is an error reply, and the connection stays.
		r = dialRESP(t, n.addr)
		r.send("GET "+strings.Repeat("k", 1000), "SET k "+strings.Repeat("v", 1024), "PING")
		r.expect("$-1", "+OK", "+PONG")
	})
}

// TestRESPAddressInlineAndSharedData: -resp-address takes inline commands;
// data written over RESP is read over gRPC and the binary protocol, and
// the other way round.
func TestRESPAddressInlineAndSharedData(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = n.srv.ServeRESP(lis) }()
	r := dialRESP(t, lis.Addr().String())
	r.raw("SET fromresp \"hello world\"\r\nGET fromresp\r\n")
	r.expect("+OK", "$11", "hello world")

	ctx := ctxT(t)
	g, err := n.kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte("fromresp")})
	if err != nil || string(g.GetKv().GetValue()) != "hello world" {
		t.Fatalf("gRPC read of a RESP write: %v %v", g, err)
	}
	b := dialRaw(t, n.addr)
	if res := b.call(&wire.Request{Op: wire.OpGet, ID: 1, Key: []byte("fromresp")}); res.Status != wire.StatusOK || string(res.KV.Value) != "hello world" {
		t.Fatalf("binary read of a RESP write: %+v", res)
	}
	if _, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte("fromgrpc"), Value: []byte("7")}); err != nil {
		t.Fatal(err)
	}
	if res := b.call(&wire.Request{Op: wire.OpPut, ID: 2, Key: []byte("frombinary"), Value: []byte("b")}); res.Status != wire.StatusOK {
		t.Fatalf("binary put: %+v", res)
	}
	r.raw("INCR fromgrpc\r\nGET frombinary\r\n")
	r.expect(":8", "$1", "b")
	r.raw("QUIT\r\n")
	r.expect("+OK")
	r.expectClose()
}

// TestRESPAuth: with authentication on, commands need AUTH (or HELLO
// AUTH) first, and core's permissions apply.
func TestRESPAuth(t *testing.T) {
	n, _ := authNode(t)
	ctx := ctxT(t)
	anon := redisClient(t, n.addr, 2, nil)
	wantErr(t, anon.Get(ctx, "app/x").Err(), "NOAUTH")
	r := dialRESP(t, n.addr)
	r.send("GET app/x", "AUTH alice wrong", "AUTH alice alicepw", "SET app/x 1", "SET other 1", "FLUSHALL", "GET app/x")
	r.expect("-NOAUTH Authentication required.", "-WRONGPASS invalid username-password pair or user is disabled.", "+OK", "+OK")
	line, _ := r.br.ReadString('\n')
	if !strings.HasPrefix(line, "-NOPERM") {
		t.Fatalf("write outside alice's prefix: %q", line)
	}
	line, _ = r.br.ReadString('\n')
	if !strings.HasPrefix(line, "-NOPERM") {
		t.Fatalf("FLUSHALL by a non-root user: %q", line)
	}
	r.expect("$1", "1")
	// Inside MULTI a plain SET outside the prefix is refused for writing
	// (it reads nothing); the queue's other writes commit, as in Redis.
	r.send("MULTI", "SET app/m 1", "SET other 1", "EXEC")
	r.expect("+OK", "+QUEUED", "+QUEUED", "*2", "+OK")
	if line, _ = r.br.ReadString('\n'); !strings.HasPrefix(line, "-NOPERM") || !strings.Contains(line, "may not write key") {
		t.Fatalf("SET outside alice's prefix inside MULTI: %q", line)
	}
	r.send("RANDOMKEY")
	r.expect("-NOPERM RANDOMKEY needs the right to read every key")
	alice := redisClient(t, n.addr, 3, func(o *redis.Options) { o.Username, o.Password = "alice", "alicepw" })
	if v := must(alice.Incr(ctx, "app/x").Result()); v != 2 {
		t.Fatalf("incr as alice over HELLO AUTH = %d", v)
	}
	wantErr(t, alice.Incr(ctx, "nope").Err(), "NOPERM")
	// A scan whose pattern stays in alice's prefix is allowed; INFO and
	// CLIENT LIST, the node's state, need root.
	if keys, _, err := alice.Scan(ctx, 0, "app/*", 10).Result(); err != nil || len(keys) != 2 {
		t.Fatalf("scan app/*: %v %v", keys, err)
	}
	wantErr(t, alice.Scan(ctx, 0, "*", 10).Err(), "NOPERM")
	wantErr(t, alice.Info(ctx).Err(), "NOPERM")
	wantErr(t, alice.ClientList(ctx).Err(), "NOPERM")
	root := redisClient(t, n.addr, 2, func(o *redis.Options) { o.Username, o.Password = "root", "rootpw" })
	must(root.Info(ctx).Result())
	must(root.ClientList(ctx).Result())
}

// BenchmarkRESPGetSet: pipelines of 16 GETs or SETs over one connection to
// an in-process node; allocations are the whole process's per command.
func BenchmarkRESPGetSet(b *testing.B) {
	n := startNodeTB(b, b.TempDir(), nil, true)
	for _, cmd := range []string{"GET", "SET"} {
		b.Run(cmd, func(b *testing.B) {
			c, err := net.Dial("tcp", n.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			var req []byte
			for i := range 16 {
				k := "key:" + itoa(int64(i))
				if cmd == "GET" {
					req = append(req, "*2\r\n$3\r\nGET\r\n$"+itoa(int64(len(k)))+"\r\n"+k+"\r\n"...)
				} else {
					req = append(req, "*3\r\n$3\r\nSET\r\n$"+itoa(int64(len(k)))+"\r\n"+k+"\r\n$32\r\n"+strings.Repeat("v", 32)+"\r\n"...)
				}
			}
			br := bufio.NewReaderSize(c, 64<<10)
			round := func() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				for range 16 {
					line, err := br.ReadSlice('\n')
					if err != nil {
						b.Fatal(err)
					}
					if line[0] == '$' && line[1] != '-' {
						if _, err := br.ReadSlice('\n'); err != nil {
							b.Fatal(err)
						}
					} else if line[0] == '-' {
						b.Fatalf("%s", line)
					}
				}
			}
			if cmd == "GET" {
				round() // the keys exist after a SET round or not: both are answers
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += 16 {
				round()
			}
		})
	}
}

var _ = context.Background

// TestRESPProtectedModeAndDetection: a refused Redis client reads -DENIED
// with the protected-mode message; the sniffer hands "*" to RESP; a client
// over -max-connections reads Redis's "max number of clients" error.
func TestRESPProtectedModeAndDetection(t *testing.T) {
	client, server := net.Pipe()
	go refuseRESP(server)
	defer client.Close()
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(client).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "-DENIED") || !strings.Contains(line, "-protected-mode=false") {
		t.Fatalf("protected mode: %q %v", line, err)
	}
	for in, want := range map[string]protocol{"*": protoRESP, "*1\r\n$4\r\nPING\r\n": protoRESP, "PRI * HTTP/2.0": protoPending} {
		if got := classifyOpening([]byte(in)); got != want {
			t.Errorf("classifyOpening(%q) = %v, want %v", in, got, want)
		}
	}
	if got := string(refusal(protoRESP, 0, wire.ServerHello{}, "too many")); got != "-ERR max number of clients reached: too many\r\n" {
		t.Fatalf("refusal: %q", got)
	}
}

// TestRESPReplyBounded: a command whose reply would hold more than
// max-response-bytes (MGET naming a large key many times, alone or inside
// MULTI, or a whole EXEC) gets an error instead of a reply built in full
// in memory; EXEC then applies nothing, and the connection goes on.
func TestRESPReplyBounded(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) { c.Limits.MaxResponseBytes = 1000 })
	r := dialRESP(t, n.addr)
	v := strings.Repeat("v", 300)
	r.exchange([]respExchange{
		{"SET k " + v, []string{"+OK"}},
		{"MGET k k k", []string{"*3", "$300", v, "$300", v, "$300", v}},
		{"MGET k k k k", []string{"-ERR the reply of 'mget' would be over the max-response-bytes limit of 1000 bytes: ask for fewer keys"}},
		{"MULTI", []string{"+OK"}},
		{"SET x 1", []string{"+QUEUED"}},
		{"MGET k k k k", []string{"+QUEUED"}},
		{"EXEC", []string{"*2", "+OK", "-ERR the reply of 'mget' would be over the max-response-bytes limit of 1000 bytes: ask for fewer keys"}},
		{"MULTI", []string{"+OK"}},
		{"SET y 1", []string{"+QUEUED"}},
		{"GET k", []string{"+QUEUED"}},
		{"GET k", []string{"+QUEUED"}},
		{"GET k", []string{"+QUEUED"}},
		{"GET k", []string{"+QUEUED"}},
		{"EXEC", []string{"-ERR the reply of 'exec' would be over the max-response-bytes limit of 1000 bytes: ask for fewer keys; nothing was applied"}},
		{"EXISTS x y", []string{":1"}},
		{"PING", []string{"+PONG"}},
	})
}

// TestRESPQueuedArgumentsCharged: a MULTI queue charges each argument its
// slice header beside its bytes, so commands of empty arguments cannot
// hold many times max-request-size; and a command with more arguments than
// an MSET of max-batch-ops pairs needs is refused and the connection
// closed, before its argument list is built.
func TestRESPQueuedArgumentsCharged(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) { c.Limits.MaxRequestSize = 1000; c.Limits.MaxBatchOps = 100 })
	r := dialRESP(t, n.addr)
	// "MGET" and 39 empty keys: 4 bytes on the wire's bulk strings, 24 × 41
	// charged with the headers: 988 of the 1,000.
	mget := "*40\r\n$4\r\nMGET\r\n" + strings.Repeat("$0\r\n\r\n", 39)
	r.exchange([]respExchange{{"MULTI", []string{"+OK"}}})
	r.raw(mget)
	r.expect("+QUEUED")
	r.raw(mget)
	r.expect("-ERR the transaction is over the max-request-size or max-txn-ops limit")
	r.exchange([]respExchange{{"EXEC", []string{"-EXECABORT Transaction discarded because of previous errors."}}})
	// 2 × 100 + 16 arguments at most.
	r.raw("*217\r\n")
	r.expect("-ERR Protocol error: too many arguments in one command: at most 216")
	if _, err := r.br.ReadByte(); err == nil {
		t.Fatal("connection still open after a protocol error")
	}
}

// TestRESPUnwatchInMulti: UNWATCH inside MULTI is queued and answers +OK
// at EXEC, as in Redis; it does not undo the WATCH that EXEC checks first.
func TestRESPUnwatchInMulti(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	r := dialRESP(t, n.addr)
	other := dialRESP(t, n.addr)
	r.exchange([]respExchange{
		{"WATCH u", []string{"+OK"}},
		{"MULTI", []string{"+OK"}},
		{"UNWATCH", []string{"+QUEUED"}},
		{"SET u 1", []string{"+QUEUED"}},
		{"EXEC", []string{"*2", "+OK", "+OK"}},
		{"GET u", []string{"$1", "1"}},
		{"WATCH u", []string{"+OK"}},
		{"MULTI", []string{"+OK"}},
		{"UNWATCH", []string{"+QUEUED"}},
		{"SET u 2", []string{"+QUEUED"}},
	})
	other.exchange([]respExchange{{"SET u 3", []string{"+OK"}}})
	r.exchange([]respExchange{
		{"EXEC", []string{"*-1"}},
		{"GET u", []string{"$1", "3"}},
	})
}
