package e2e

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// redisTool finds one of Debian's redis-tools binaries. Without it the test
// skips outside CI; `make test-redis` (which CI runs) installs the package.
func redisTool(t *testing.T, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err == nil {
		return bin
	}
	if os.Getenv("CI") == "" {
		t.Skipf("%s is not installed; `make test-redis` installs Debian's redis-tools and runs this test", name)
	}
	t.Fatalf("%s is not installed but CI is set: run `make test-redis`, which installs redis-tools", name)
	return ""
}

// redisCLI runs redis-cli against addr with stdin as its script.
func redisCLI(t *testing.T, addr, stdin string, args ...string) string {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command(redisTool(t, "redis-cli"), append([]string{"-h", host, "-p", port}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// redisScript is a redis-cli session over every command of docs/redis.md
// and their error cases, with the replies redis-cli prints (--no-raw).
const redisScript = `FLUSHALL
PING
PING hello
ECHO "two words"
SET s hello
GET s
SET s world NX
SET s world XX GET
SET n 10 NX
SET s v EX 10
SET s v KEEPTTL
SETNX s x
SETNX s2 x
GETSET s2 y
GETDEL s2
GETDEL s2
MSET a 1 b 2 c 3
MGET a b nope
MSETNX a 9 z 9
MSETNX y 1 z 2
EXISTS a b nope
INCR n
INCRBY n 5
DECR n
DECRBY n 3
INCRBY n x
INCR s
INCRBYFLOAT f 1.5
INCRBYFLOAT f 0.25
INCRBYFLOAT s 1
APPEND s "!!"
STRLEN s
GETRANGE s 0 2
GETRANGE s -3 -1
SETRANGE s 10 X
SETRANGE s -1 X
GET s
TYPE s
TYPE nope
RENAME a a2
RENAME a a3
RENAMENX b a2
RENAMENX b b2
DEL a2 b2 nope
UNLINK c
KEYS *
KEYS [fn]*
DBSIZE
SCAN 0 MATCH * COUNT 100
EXPIRE s 10
TTL s
SELECT 0
SELECT 1
NOSUCHCOMMAND arg
GET
CLIENT SETNAME cli-test
CLIENT GETNAME
CONFIG SET maxmemory 1
READONLY
GET n
READWRITE
MULTI
INCR n
SET t v
GET t
EXEC
MULTI
GET
EXEC
DISCARD
UNWATCH
HELLO 4
FLUSHDB
DBSIZE
`

const redisScriptOut = `OK
PONG
"hello"
"two words"
OK
"hello"
(nil)
"hello"
OK
OK
OK
(integer) 0
(integer) 1
"x"
"y"
(nil)
OK
1) "1"
2) "2"
3) (nil)
(integer) 0
(integer) 1
(integer) 2
(integer) 11
(integer) 16
(integer) 15
(integer) 12
(error) ERR value is not an integer or out of range
(error) ERR value is not an integer or out of range
"1.5"
"1.75"
(error) ERR value is not a valid float
(integer) 3
(integer) 3
"v!!"
"v!!"
(integer) 11
(error) ERR offset is out of range
"v!!\x00\x00\x00\x00\x00\x00\x00X"
string
none
OK
(error) ERR no such key
(integer) 0
(integer) 1
(integer) 2
(integer) 1
1) "f"
2) "n"
3) "s"
4) "y"
5) "z"
1) "f"
2) "n"
(integer) 5
1) "0"
2) 1) "f"
   2) "n"
   3) "s"
   4) "y"
   5) "z"
(integer) 1
(integer) 10
OK
(error) ERR DB index is out of range: KVDB has one keyspace, database 0 (docs/redis.md)
(error) ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'arg'
(error) ERR wrong number of arguments for 'get' command
OK
"cli-test"
(error) ERR CONFIG SET is not supported: KVDB is configured with kvdb-server's flags (docs/redis.md)
OK
"12"
OK
OK
QUEUED
QUEUED
QUEUED
1) (integer) 13
2) OK
3) "v"
OK
(error) ERR wrong number of arguments for 'get' command
(error) EXECABORT Transaction discarded because of previous errors.
(error) ERR DISCARD without MULTI
OK
(error) NOPROTO unsupported protocol version
OK
(integer) 0
`

// TestRedisCLI runs redis-cli against a node: the script of every command,
// on the node's port and on -resp-address (where inline commands, which
// redis-cli does not send, are also accepted); then a MULTI/EXEC whose
// WATCHed key another connection changes.
func TestRedisCLI(t *testing.T) {
	redisTool(t, "redis-cli")
	addr, respAddr := freeAddr(t), freeAddr(t)
	startServer(t, addr, t.TempDir(), "-resp-address="+respAddr)
	for _, a := range []string{addr, respAddr} {
		got := redisCLI(t, a, redisScript, "--no-raw")
		got = strings.ReplaceAll(got, " \n", "\n")
		if got != redisScriptOut {
			t.Fatalf("redis-cli against %s:\n%s\nwant:\n%s", a, got, redisScriptOut)
		}
	}
	if out := redisCLI(t, addr, "", "INFO", "replication"); !strings.Contains(out, "role:master") || !strings.Contains(out, "raft_leader:node1") {
		t.Fatalf("INFO replication:\n%s", out)
	}

	// WATCH w, then another connection sets w, then MULTI/EXEC: nil.
	host, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command(redisTool(t, "redis-cli"), "-h", host, "-p", port, "--no-raw")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(stdin, "SET w 0\nWATCH w\nSET marker watched\n"); err != nil {
		t.Fatal(err)
	}
	// The marker shows the session is past WATCH (redis-cli runs the lines
	// in order as it reads them).
	seen := false
	for range 500 {
		if strings.TrimSpace(redisCLI(t, addr, "", "GET", "marker")) == "watched" {
			seen = true
			break
		}
	}
	if !seen {
		t.Fatal("the WATCH session did not get to its marker")
	}
	redisCLI(t, addr, "", "SET", "w", "theirs")
	if _, err := io.WriteString(stdin, "MULTI\nSET w mine\nEXEC\nGET w\n"); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	var lines []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(lines, "|"); got != `OK|OK|OK|OK|QUEUED|(nil)|"theirs"` {
		t.Fatalf("WATCH conflict session: %s", got)
	}
}

// benchOK runs redis-benchmark and fails on any error it reports.
func benchOK(t *testing.T, addr string, args ...string) string {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command(redisTool(t, "redis-benchmark"), append([]string{"-h", host, "-p", port}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(strings.ToLower(string(out)), "error") {
		t.Fatalf("redis-benchmark %v: %v\n%s", args, err, out)
	}
	return string(out)
}

var benchArgs = []string{"-t", "set,get,incr,mset", "-n", "20000", "-P", "16", "-c", "20", "-q"}

// TestRedisBenchmark: redis-benchmark's SET, GET, INCR and MSET against a
// node, then against a follower of a 3-node cluster (writes forwarded to
// the leader), with no errors; INCR's counter ends at exactly the number of
// INCRs on every member.
func TestRedisBenchmark(t *testing.T) {
	redisTool(t, "redis-benchmark")
	addr := freeAddr(t)
	startServer(t, addr, t.TempDir())
	out := benchOK(t, addr, benchArgs...)
	t.Logf("against a node:\n%s", out)
	for _, op := range []string{"SET:", "GET:", "INCR:", "MSET (10 keys):"} {
		if !strings.Contains(out, op) {
			t.Fatalf("no %s result:\n%s", op, out)
		}
	}
	if got := strings.TrimSpace(redisCLI(t, addr, "", "GET", "counter:__rand_int__")); got != "20000" {
		t.Fatalf("counter after 20000 INCRs = %s", got)
	}

	c := startProcCluster(t)
	follower := -1
	for range 500 {
		if l := c.leader(t, -1); l >= 0 {
			follower = (l + 1) % 3
			break
		}
	}
	if follower < 0 {
		t.Fatal("no leader")
	}
	t.Logf("against a follower:\n%s", benchOK(t, c.addrs[follower], benchArgs...))
	for _, a := range c.addrs {
		// Linearizable reads: every member answers the final count.
		if got := strings.TrimSpace(redisCLI(t, a, "", "GET", "counter:__rand_int__")); got != "20000" {
			t.Fatalf("counter on %s = %s", a, got)
		}
	}
}

// TestRedisWriteSurvivesKill: a key written over RESP and acknowledged is
// there after kill -9 and a restart, read over RESP and gRPC.
func TestRedisWriteSurvivesKill(t *testing.T) {
	redisTool(t, "redis-cli")
	addr, dir := freeAddr(t), t.TempDir()
	p := startServer(t, addr, dir, "-sync-writes=true")
	if out := redisCLI(t, addr, "SET durable yes\nINCRBY n 41\nINCR n\nMSET m1 a m2 b\n"); out != "OK\n41\n42\nOK\n" {
		t.Fatalf("writes: %q", out)
	}
	p.kill()
	startServer(t, addr, dir, "-sync-writes=true")
	if out := redisCLI(t, addr, "GET durable\nGET n\nMGET m1 m2\n"); out != "yes\n42\na\nb\n" {
		t.Fatalf("after kill -9: %q", out)
	}
	kv, _ := dial(t, addr)
	got, err := kv.Get(t.Context(), kvGet("durable"))
	if err != nil || string(got.GetKv().GetValue()) != "yes" {
		t.Fatalf("gRPC read after kill -9: %v %v", got, err)
	}
}

func kvGet(key string) *kvdbv1.GetRequest { return &kvdbv1.GetRequest{Key: []byte(key)} }
