package service

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRESPTTL checks the expiry commands' replies against Redis's, one
// exchange at a time over a raw connection.
func TestRESPTTL(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	r := dialRESP(t, n.addr)
	future := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	futureMs := strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)
	// A deadline 700 ms past a second: EXPIRETIME rounds it up.
	sec := time.Now().Add(time.Hour).Unix()
	roundedMs, rounded := strconv.FormatInt(sec*1000+700, 10), strconv.FormatInt(sec+1, 10)
	r.exchange([]respExchange{
		{"TTL missing", []string{":-2"}},
		{"PTTL missing", []string{":-2"}},
		{"SET plain v", []string{"+OK"}},
		{"TTL plain", []string{":-1"}},
		{"EXPIRETIME plain", []string{":-1"}},
		{"PERSIST plain", []string{":0"}},
		{"EXPIRE missing 10", []string{":0"}},
		{"EXPIRE plain 100", []string{":1"}},
		{"TTL plain", []string{":100"}},
		{"EXPIRE plain 200 NX", []string{":0"}},
		{"EXPIRE plain 50 GT", []string{":0"}},
		{"EXPIRE plain 300 GT", []string{":1"}},
		{"EXPIRE plain 30 LT", []string{":1"}},
		{"TTL plain", []string{":30"}},
		{"EXPIRE plain 10 XX", []string{":1"}},
		{"PERSIST plain", []string{":1"}},
		{"TTL plain", []string{":-1"}},
		{"EXPIRE plain 10 NX XX", []string{"-ERR NX and XX, GT or LT options at the same time are not compatible"}},
		{"EXPIRE plain 10 GT LT", []string{"-ERR GT and LT options at the same time are not compatible"}},
		{"EXPIRE plain 10 XX LT", []string{"-ERR XX and LT options together are not supported (docs/redis.md)"}},
		{"EXPIRE plain 10 XX GT", []string{":0"}}, // no TTL: XX GT does nothing, as in Redis
		{"EXPIRE plain 10 FOO", []string{"-ERR Unsupported option FOO"}},
		{"EXPIRE plain 99999999999999999", []string{"-ERR invalid expire time in 'expire' command"}},
		{"EXPIRE plain -9223372036854775808", []string{"-ERR invalid expire time in 'expire' command"}},
		{"EXPIREAT plain -9223372036854776", []string{"-ERR invalid expire time in 'expireat' command"}},
		{"EXISTS plain", []string{":1"}},
		{"EXPIRE plain ten", []string{"-ERR value is not an integer or out of range"}},
		{"SET e v EX 100", []string{"+OK"}},
		{"TTL e", []string{":100"}},
		{"SET e v2 KEEPTTL", []string{"+OK"}},
		{"TTL e", []string{":100"}},
		{"GET e", []string{"$2", "v2"}},
		{"SET e v3", []string{"+OK"}},
		{"TTL e", []string{":-1"}},
		{"SET p v PX 100000", []string{"+OK"}},
		{"TTL p", []string{":100"}},
		{"SET a v EXAT " + future, []string{"+OK"}},
		{"EXPIRETIME a", []string{":" + future}},
		{"SET b v PXAT " + futureMs, []string{"+OK"}},
		{"PEXPIRETIME b", []string{":" + futureMs}},
		{"SET rounded v PXAT " + roundedMs, []string{"+OK"}},
		{"EXPIRETIME rounded", []string{":" + rounded}}, // to the nearest second, as Redis
		{"SET x v EX 0", []string{"-ERR invalid expire time in 'set' command"}},
		{"SET x v EX -5", []string{"-ERR invalid expire time in 'set' command"}},
		{"SET x v EX", []string{"-ERR syntax error"}},
		{"SET x v EX 10 PX 10", []string{"-ERR syntax error"}},
		{"SET x v EX nope", []string{"-ERR value is not an integer or out of range"}},
		{"SET nx v NX EX 100", []string{"+OK"}},
		{"SET nx v NX EX 100", []string{"$-1"}},
		{"TTL nx", []string{":100"}},
		{"SETEX s 100 v", []string{"+OK"}},
		{"TTL s", []string{":100"}},
		{"PSETEX s 100000 v", []string{"+OK"}},
		{"TTL s", []string{":100"}},
		{"SETEX s 0 v", []string{"-ERR invalid expire time in 'setex' command"}},
		{"INCR counter", []string{":1"}},
		{"EXPIRE counter 100", []string{":1"}},
		{"INCR counter", []string{":2"}},
		{"TTL counter", []string{":100"}},
		// A deadline in the past hides the key at once.
		{"EXPIRE counter -1", []string{":1"}},
		{"GET counter", []string{"$-1"}},
		{"TTL counter", []string{":-2"}},
		{"EXISTS counter", []string{":0"}},
		// A one-shot transaction's reads hide it too, whether or not its
		// delete has applied yet.
		{"SET g old", []string{"+OK"}},
		{"EXPIRE g -1", []string{":1"}},
		{"GETSET g new", []string{"$-1"}},
		{"GET g", []string{"$3", "new"}},
		{"TTL g", []string{":-1"}},
	})
	// Every expiring key goes, and the count shows in INFO.
	end := time.Now().Add(10 * time.Second)
	for {
		r.send("SET gone v PX 1")
		r.expect("+OK")
		time.Sleep(5 * time.Millisecond)
		if n.srv.Store().ExpiredKeys() > 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatal("nothing expired")
		}
	}
	r.send("INFO stats")
	line, err := r.br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	size, _ := strconv.Atoi(strings.TrimSpace(line[1:]))
	buf := make([]byte, size+2)
	if _, err := io.ReadFull(r.br, buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(buf), "expired_keys:") {
		t.Fatalf("INFO stats without expired_keys: %s", buf)
	}
}

// TestRESPExpiredNotYetDeleted: a key past its deadline whose delete the
// leader has not proposed yet (it waits an election timeout after taking
// the lead, here long) is absent to DEL's count and to the conditions of
// SETNX, MSETNX and SET NX/XX, as in Redis, not only to reads.
func TestRESPExpiredNotYetDeleted(t *testing.T) {
	n := startNode(t, t.TempDir(), func(cfg *Config) { cfg.Raft.ElectionTicks = 6000 })
	r := dialRESP(t, n.addr)
	r.exchange([]respExchange{
		{"MSET a 1 b 1 c 1 d 1 e 1 g 1 h 1", []string{"+OK"}},
		{"PEXPIREAT a 1", []string{":1"}},
		{"PEXPIREAT b 1", []string{":1"}},
		{"PEXPIREAT d 1", []string{":1"}},
		{"PEXPIREAT e 1", []string{":1"}},
		{"PEXPIREAT g 1", []string{":1"}},
		{"PEXPIREAT h 1", []string{":1"}},
		{"EXISTS a", []string{":0"}},
		{"DEL a", []string{":0"}},
		{"DEL b c", []string{":1"}},
		{"SETNX d z", []string{":1"}},
		{"GET d", []string{"$1", "z"}},
		{"MSETNX e 2 f 2", []string{":1"}},
		{"GET e", []string{"$1", "2"}},
		{"SET g v NX", []string{"+OK"}},
		{"SET h v XX", []string{"$-1"}},
		{"TTL d", []string{":-1"}},
	})
	if got := n.srv.Store().ExpiredKeys(); got != 0 {
		t.Fatalf("the expiry loop deleted %d keys during the test: it did not test the window", got)
	}
}

// TestRESPTTLPermissions: every expiry command is checked through core:
// alice (readwrite on "app/") may use them on her keys, not on others.
func TestRESPTTLPermissions(t *testing.T) {
	n, _ := authNode(t)
	r := dialRESP(t, n.addr)
	r.send("AUTH alice alicepw")
	r.expect("+OK")
	for _, cmd := range []string{"SET %s v EX 100", "SET %s v KEEPTTL", "SETEX %s 100 v", "PSETEX %s 100 v",
		"EXPIRE %s 100", "PEXPIRE %s 100", "EXPIREAT %s 2000000000", "PEXPIREAT %s 2000000000000",
		"PERSIST %s", "TTL %s", "PTTL %s", "EXPIRETIME %s", "PEXPIRETIME %s"} {
		r.send(fmt.Sprintf(cmd, "app/k"))
		line, err := r.br.ReadString('\n')
		if err != nil || strings.HasPrefix(line, "-") {
			t.Errorf("%s on alice's key: %q %v", cmd, line, err)
		}
		r.send(fmt.Sprintf(cmd, "other"))
		line, err = r.br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "-NOPERM") {
			t.Errorf("%s on another key: %q %v, want NOPERM", cmd, line, err)
		}
	}
}

// TestRESPTransactionKeepsTTL: inside MULTI/EXEC the read-modify-write
// commands keep a key's TTL, as they do outside it and as Redis does
// (redis-py's pipeline() runs them so); SET and GETSET drop it.
func TestRESPTransactionKeepsTTL(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx := ctxT(t)
	c := redisClient(t, n.addr, 2, nil)
	for _, tc := range []struct {
		name    string
		initial string
		queue   func(p redis.Pipeliner)
		keep    bool
	}{
		{"INCR", "5", func(p redis.Pipeliner) { p.Incr(ctx, "k") }, true},
		{"DECRBY", "5", func(p redis.Pipeliner) { p.DecrBy(ctx, "k", 2) }, true},
		{"INCRBYFLOAT", "5", func(p redis.Pipeliner) { p.IncrByFloat(ctx, "k", 0.5) }, true},
		{"APPEND", "5", func(p redis.Pipeliner) { p.Append(ctx, "k", "x") }, true},
		{"SETRANGE", "5", func(p redis.Pipeliner) { p.SetRange(ctx, "k", 3, "x") }, true},
		{"INCR twice", "5", func(p redis.Pipeliner) { p.Incr(ctx, "k"); p.Incr(ctx, "k") }, true},
		{"SET", "5", func(p redis.Pipeliner) { p.Set(ctx, "k", "1", 0) }, false},
		{"SET then INCR", "5", func(p redis.Pipeliner) { p.Set(ctx, "k", "1", 0); p.Incr(ctx, "k") }, false},
		{"GETSET", "5", func(p redis.Pipeliner) { p.GetSet(ctx, "k", "1") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			must(c.Set(ctx, "k", tc.initial, time.Hour).Result())
			if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error { tc.queue(p); return nil }); err != nil {
				t.Fatal(err)
			}
			ttl, err := c.TTL(ctx, "k").Result()
			if err != nil {
				t.Fatal(err)
			}
			if kept := ttl > 59*time.Minute; kept != tc.keep {
				t.Fatalf("TTL after the transaction: %v, want it kept: %v", ttl, tc.keep)
			}
		})
	}
	// A key created by INCR in a transaction has no TTL.
	must(c.Del(ctx, "fresh").Result())
	if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error { p.Incr(ctx, "fresh"); return nil }); err != nil {
		t.Fatal(err)
	}
	if ttl, err := c.TTL(ctx, "fresh").Result(); err != nil || ttl != -1 {
		t.Fatalf("TTL of a key INCR created: %v %v", ttl, err)
	}
	// INFO counts the keys with a TTL, as Redis's "expires" does.
	must(c.Set(ctx, "e", "v", time.Hour).Result())
	if v := must(c.Info(ctx, "keyspace").Result()); !strings.Contains(v, "db0:keys=3,expires=1,") {
		t.Fatalf("INFO keyspace = %q", v)
	}
}
