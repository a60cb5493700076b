package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	kvclient "github.com/kvdb/kvdb/client"
	"github.com/kvdb/kvdb/internal/bench"
)

// etcdDriver runs the bench loop over the official etcd client: one
// clientv3.Client per connection, workers spread over them.
type etcdDriver struct {
	cs   []*clientv3.Client
	next atomic.Uint64
}

func newEtcd(endpoint string, conns int) (*etcdDriver, error) {
	d := &etcdDriver{}
	for range conns {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			d.Close()
			return nil, err
		}
		d.cs = append(d.cs, c)
	}
	return d, nil
}

func (d *etcdDriver) c() *clientv3.Client {
	return d.cs[d.next.Add(1)%uint64(len(d.cs))]
}

func (d *etcdDriver) Get(ctx context.Context, key []byte) error {
	r, err := d.c().Get(ctx, string(key))
	if err == nil && len(r.Kvs) == 0 {
		return fmt.Errorf("etcd: %s not found", key)
	}
	return err
}
func (d *etcdDriver) Put(ctx context.Context, key, value []byte) error {
	_, err := d.c().Put(ctx, string(key), string(value))
	return err
}
func (d *etcdDriver) Delete(ctx context.Context, key []byte) error {
	_, err := d.c().Delete(ctx, string(key))
	return err
}
func (d *etcdDriver) Batch(ctx context.Context, kvs []bench.KV) error {
	ops := make([]clientv3.Op, len(kvs))
	for i, kv := range kvs {
		ops[i] = clientv3.OpPut(string(kv.Key), string(kv.Value))
	}
	_, err := d.c().Txn(ctx).Then(ops...).Commit()
	return err
}
func (d *etcdDriver) Txn(ctx context.Context, readKey, writeKey, value []byte) error {
	_, err := d.c().Txn(ctx).Then(clientv3.OpGet(string(readKey)), clientv3.OpPut(string(writeKey), string(value))).Commit()
	return err
}
func (d *etcdDriver) Close() error {
	for _, c := range d.cs {
		c.Close()
	}
	return nil
}

// row is one measured figure of the comparison.
type row struct {
	system, op string
	conns      int
	opsPerSec  float64
	p99us      float64
}

const (
	cmpClientsPerConn = 4
	cmpPipeline       = 16 // where the system pipelines (KVDB binary, Redis)
	cmpValueSize      = 256
	cmpKeys           = 10_000
)

func ensurePackages() error {
	var missing []string
	for bin, pkg := range map[string]string{"redis-server": "redis-server", "redis-benchmark": "redis-tools", "etcd": "etcd-server"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	fmt.Printf("installing %v from Debian's packages\n", missing)
	for _, args := range [][]string{{"apt-get", "update"}, append([]string{"apt-get", "install", "-y", "--no-install-recommends"}, missing...)} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(args, " "), err)
		}
	}
	return nil
}

func runCompare(ctx context.Context, o *options) error {
	if err := ensurePackages(); err != nil {
		return err
	}
	var rows []row
	add := func(system, op string, conns int, r *bench.Result) {
		rows = append(rows, row{system, op, conns, r.OpsPerSec, r.P99Us})
		fmt.Printf("%-12s %-4s conns=%-3d %10.0f ops/s p99 %6.0f µs errors %d %v\n", system, op, conns, r.OpsPerSec, r.P99Us, r.Errors, r.ErrorsByCode)
	}

	kv, err := startCluster(ctx, o, 1)
	if err != nil {
		return err
	}
	for _, n := range o.conns {
		for _, op := range []bench.Op{bench.OpPut, bench.OpGet} {
			for _, p := range []struct {
				name  string
				proto kvclient.Protocol
				pipe  int
			}{{"kvdb-binary", kvclient.ProtocolBinary, cmpPipeline}, {"kvdb-grpc", kvclient.ProtocolGRPC, 1}} {
				r, err := median(ctx, o, kv.addrs, shape{op: op, protocol: p.proto, connections: n, clients: n * cmpClientsPerConn, pipeline: p.pipe})
				if err != nil {
					kv.stop()
					return fmt.Errorf("%s %s: %w", p.name, op, err)
				}
				add(p.name, strings.ToUpper(string(op)), n, r)
			}
			// The Redis protocol, driven by redis-benchmark exactly as Redis
			// is below.
			var rs []*bench.Result
			for range o.runs {
				r, err := redisBench(ctx, kv.addrs[0], strings.ToUpper(string(op)), n*cmpClientsPerConn, o.duration)
				if err != nil {
					kv.stop()
					return fmt.Errorf("kvdb-resp %s: %w", op, err)
				}
				rs = append(rs, r)
			}
			add("kvdb-resp", strings.ToUpper(string(op)), n, medianOf(rs))
		}
	}
	targets, err := respTargets(ctx, "kvdb", kv.addrs[0], o)
	if err != nil {
		kv.stop()
		return err
	}
	kv.stop()

	eaddr, epeer := freeAddr(), freeAddr()
	etcd, err := start("etcd", "etcd", "--data-dir={dir}/etcd", "--listen-client-urls=http://"+eaddr, "--advertise-client-urls=http://"+eaddr,
		"--listen-peer-urls=http://"+epeer, "--initial-advertise-peer-urls=http://"+epeer, "--initial-cluster=default=http://"+epeer, "--log-level=error")
	if err != nil {
		return err
	}
	for _, n := range o.conns {
		for _, op := range []bench.Op{bench.OpPut, bench.OpGet} {
			var rs []*bench.Result
			for range o.runs {
				d, err := newEtcd(eaddr, n)
				if err != nil {
					return err
				}
				r, err := bench.Run(ctx, d, bench.Config{Op: op, Clients: n * cmpClientsPerConn, ValueSize: cmpValueSize, Keys: cmpKeys, KeyPrefix: "bench/", Duration: o.duration})
				d.Close()
				if err != nil {
					return fmt.Errorf("etcd %s (log in %s): %w", op, etcd.dir, err)
				}
				rs = append(rs, r)
			}
			add("etcd", strings.ToUpper(string(op)), n, medianOf(rs))
		}
	}
	etcd.stop()

	raddr := freeAddr()
	_, rport, _ := strings.Cut(raddr, ":")
	redis, err := start("redis", "redis-server", "--port", rport, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", "{dir}")
	if err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	for _, n := range o.conns {
		for _, op := range []string{"PUT", "GET"} {
			var rs []*bench.Result
			for range o.runs {
				r, err := redisBench(ctx, raddr, op, n*cmpClientsPerConn, o.duration)
				if err != nil {
					return fmt.Errorf("redis (log in %s): %w", redis.dir, err)
				}
				rs = append(rs, r)
			}
			add("redis", op, n, medianOf(rs))
		}
	}
	t, err := respTargets(ctx, "redis", raddr, o)
	if err != nil {
		return err
	}
	targets = append(targets, t...)
	redis.stop()

	aaddr := freeAddr()
	_, aport, _ := strings.Cut(aaddr, ":")
	aof, err := start("redis-aof", "redis-server", "--port", aport, "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--dir", "{dir}")
	if err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	t, err = respTargets(ctx, "redis-aof", aaddr, o)
	aof.stop()
	if err != nil {
		return err
	}
	targets = append(targets, t...)
	return writeReport(o, rows, targets)
}

// target is one run of the Redis-protocol target table: the same
// redis-benchmark command against KVDB and Redis.
type target struct {
	system   string
	test     string // SET, GET
	pipeline int
	rps      float64
}

// respTargetRequests is the -n of the target table's command.
const respTargetRequests = 300_000

// respTargets runs `redis-benchmark -c 50 -n 300000 -d 256 -r 10000 -t
// set,get` without and with -P 16 against addr.
func respTargets(ctx context.Context, system, addr string, o *options) ([]target, error) {
	host, port, _ := strings.Cut(addr, ":")
	n := respTargetRequests
	if o.validate {
		n /= 10
	}
	var out []target
	for _, p := range []int{1, 16} {
		cmd := exec.CommandContext(ctx, "redis-benchmark", "-h", host, "-p", port, "-c", "50", "-n", strconv.Itoa(n),
			"-d", "256", "-r", "10000", "-P", strconv.Itoa(p), "-t", "set,get", "--csv")
		raw, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("%s: redis-benchmark: %w", system, err)
		}
		recs, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
		if err != nil {
			return nil, fmt.Errorf("%s: redis-benchmark output: %q", system, raw)
		}
		for _, rec := range recs[1:] {
			if len(rec) < 2 {
				continue
			}
			rps, _ := strconv.ParseFloat(rec[1], 64)
			out = append(out, target{system: system, test: rec[0], pipeline: p, rps: rps})
			fmt.Printf("%-12s %-4s -P %-2d %10.0f req/s\n", system, rec[0], p, rps)
		}
	}
	return out, nil
}

// redisBench runs redis-benchmark with the comparison's shape: clients
// connections (Redis has one client per connection), pipelining, 256-byte
// values over 10,000 random keys. The request count is sized from a short
// probe so the run lasts about d.
func redisBench(ctx context.Context, addr, op string, clients int, d time.Duration) (*bench.Result, error) {
	test := map[string]string{"PUT": "set", "GET": "get"}[op]
	host, port, _ := strings.Cut(addr, ":")
	run := func(n int) (float64, float64, error) {
		cmd := exec.CommandContext(ctx, "redis-benchmark", "-h", host, "-p", port, "-c", strconv.Itoa(clients), "-n", strconv.Itoa(n),
			"-d", strconv.Itoa(cmpValueSize), "-r", strconv.Itoa(cmpKeys), "-P", strconv.Itoa(cmpPipeline), "-t", test, "--csv")
		out, err := cmd.Output()
		if err != nil {
			return 0, 0, fmt.Errorf("redis-benchmark: %w", err)
		}
		recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
		if err != nil || len(recs) < 2 || len(recs[1]) < 2 {
			return 0, 0, fmt.Errorf("redis-benchmark output: %q", out)
		}
		rps, _ := strconv.ParseFloat(recs[1][1], 64)
		p99 := 0.0
		for i, h := range recs[0] {
			if h == "p99_latency_ms" && i < len(recs[1]) {
				p99, _ = strconv.ParseFloat(recs[1][i], 64)
			}
		}
		return rps, p99 * 1000, nil
	}
	rps, _, err := run(20_000)
	if err != nil {
		return nil, err
	}
	n := max(int(rps*d.Seconds()), 20_000)
	rps, p99, err := run(n)
	if err != nil {
		return nil, err
	}
	return &bench.Result{OpsPerSec: rps, P99Us: p99}, nil
}

func writeReport(o *options, rows []row, targets []target) error {
	var b strings.Builder
	b.WriteString("# KVDB beside Redis and etcd\n\n")
	if o.validate {
		b.WriteString("> **Validation run, not a measurement.** These figures come from a few seconds per run on a shared, busy\n" +
			"> machine, only to check that `make bench-compare` works end to end. Re-run `make bench-compare` on a quiet\n" +
			"> machine for real figures.\n\n")
	}
	fmt.Fprintf(&b, "Generated by `make bench-compare` on %s.\n\n## Machine\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "- CPU: %s, %d cores\n- OS: %s/%s, %s\n- Go: %s\n- Load generator on the same machine, over loopback\n\n", cpuModel(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, kernel(), runtime.Version())
	fmt.Fprintf(&b, "## Load shape\n\nFor each connection count N: N connections and %d×N concurrent clients, %d-byte values, %d random keys "+
		"(preloaded for GET), %v per run, median of %d runs. KVDB is one node with default flags (WAL written to the OS before each reply, fsynced every 100 ms, not per write); "+
		"etcd is one member with default flags (fsync per commit); Redis has no persistence (`--save '' --appendonly no`).\n"+
		"Pipelining: KVDB binary and Redis keep %d requests in flight per client; KVDB gRPC and etcd are not pipelined (one request per client at a time).\n\n",
		cmpClientsPerConn, cmpValueSize, cmpKeys, o.duration, o.runs, cmpPipeline)
	b.WriteString("## Commands\n\n```\nmake bench-compare                 # all of the below, writes this file\n" +
		"kvdbctl bench --protocol binary --op put --connections N --clients 4N --pipeline 16 --value-size 256 --keys 10000\n" +
		"kvdbctl bench --protocol grpc   --op put --connections N --clients 4N --value-size 256 --keys 10000\n" +
		"redis-benchmark -c 4N -P 16 -d 256 -r 10000 -t set,get --csv   # Redis, and KVDB's Redis protocol (kvdb-resp)\n" +
		"etcd: the same Go loop (internal/bench) over go.etcd.io/etcd/client/v3, N clients, 4N workers\n```\n\n")
	b.WriteString("## Results\n\nRatio is KVDB binary ÷ the row's system (above 1: KVDB is faster).\n\n| System | Op | Connections | ops/s | p99 (µs) | ratio |\n|---|---|---|---|---|---|\n")
	ref := map[string]float64{}
	for _, r := range rows {
		if r.system == "kvdb-binary" {
			ref[fmt.Sprint(r.op, r.conns)] = r.opsPerSec
		}
	}
	for _, r := range rows {
		ratio := "—"
		if k := ref[fmt.Sprint(r.op, r.conns)]; k > 0 && r.opsPerSec > 0 && r.system != "kvdb-binary" {
			ratio = fmt.Sprintf("%.2f×", k/r.opsPerSec)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %.0f | %s |\n", r.system, r.op, r.conns, r.opsPerSec, r.p99us, ratio)
	}
	writeTargets(&b, targets)
	svgName := strings.TrimSuffix(filepath.Base(o.out), ".md") + "-throughput.svg"
	fmt.Fprintf(&b, "\n## Throughput against connections (PUT)\n\n![PUT throughput against connections](%s)\n", svgName)
	if err := os.WriteFile(filepath.Join(filepath.Dir(o.out), svgName), []byte(chart(rows, "PUT")), 0o644); err != nil {
		return err
	}
	// Sections written by hand (the target rows of benchharness targets,
	// measurements of single changes) are kept from the existing report.
	if prev, err := os.ReadFile(o.out); err == nil {
		b.WriteString(keptSections(string(prev), b.String()))
	}
	fmt.Printf("wrote %s and %s\n", o.out, svgName)
	return os.WriteFile(o.out, []byte(b.String()), 0o644)
}

// keptSections returns the "## " sections of the previous report prev
// that the new one, generated, does not write itself, in their order: what
// was written by hand survives a new run of compare.
func keptSections(prev, generated string) string {
	own := map[string]bool{}
	for line := range strings.SplitSeq(generated, "\n") {
		if strings.HasPrefix(line, "## ") {
			own[line] = true
		}
	}
	var out strings.Builder
	keep := false
	for line := range strings.SplitSeq(prev, "\n") {
		if strings.HasPrefix(line, "## ") {
			keep = !own[line]
			if keep {
				out.WriteString("\n")
			}
		}
		if keep {
			out.WriteString(line + "\n")
		}
	}
	return strings.TrimRight(out.String(), "\n") + "\n"
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown kernel"
	}
	return "Linux " + strings.TrimSpace(string(b))
}

// writeTargets writes the Redis-protocol target table: KVDB and Redis
// under the very same redis-benchmark command.
func writeTargets(b *strings.Builder, targets []target) {
	if len(targets) == 0 {
		return
	}
	b.WriteString("\n## The Redis protocol: the same redis-benchmark for KVDB and Redis\n\n" +
		"```\nredis-benchmark -c 50 -n 300000 -d 256 -r 10000 -t set,get --csv          # unpipelined\n" +
		"redis-benchmark -c 50 -n 300000 -d 256 -r 10000 -t set,get -P 16 --csv    # pipelined\n```\n\n" +
		"KVDB is the node above (one node, its default flags); redis is Redis without persistence, redis-aof Redis with " +
		"`--appendonly yes --appendfsync everysec`. Ratio is KVDB ÷ that Redis.\n\n" +
		"| Test | -P | KVDB req/s | Redis req/s | ratio | Redis AOF req/s | ratio |\n|---|---|---|---|---|---|---|\n")
	get := func(system, test string, p int) float64 {
		for _, t := range targets {
			if t.system == system && t.test == test && t.pipeline == p {
				return t.rps
			}
		}
		return 0
	}
	ratio := func(a, b float64) string {
		if a == 0 || b == 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f×", a/b)
	}
	for _, p := range []int{1, 16} {
		for _, test := range []string{"SET", "GET"} {
			k, r, a := get("kvdb", test, p), get("redis", test, p), get("redis-aof", test, p)
			fmt.Fprintf(b, "| %s | %d | %.0f | %.0f | %s | %.0f | %s |\n", test, p, k, r, ratio(k, r), a, ratio(k, a))
		}
	}
}
