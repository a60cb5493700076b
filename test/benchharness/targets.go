package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	kvclient "github.com/kvdb/kvdb/client"
	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/bench"
)

// The target rows of the README's performance table, each measured against
// its reference in the same run. With -old-bin the same rows are measured
// for a second build (the commit a change starts from) interleaved with the
// first, run by run, so the two share the machine's noise:
//
//	go run ./test/benchharness -bin bin -old-bin /tmp/old/bin -runs 3 -duration 5s targets
const (
	tgtGRPCClients = 100
	tgtGRPCConns   = 10
	tgtBinaryConns = 50
	tgtFailovers   = 5
)

// grpcDriver drives any KVService over plain generated gRPC stubs: the
// same client code for a KVDB node and the constant-returning server, so
// the ratio between them is the server's cost alone.
type grpcDriver struct {
	conns []*grpc.ClientConn
	kvs   []kvdbv1.KVServiceClient
	next  atomic.Uint64
}

func newGRPCDriver(addr string, conns int) (*grpcDriver, error) {
	d := &grpcDriver{}
	for range conns {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			d.Close()
			return nil, err
		}
		d.conns = append(d.conns, c)
		d.kvs = append(d.kvs, kvdbv1.NewKVServiceClient(c))
	}
	return d, nil
}

func (d *grpcDriver) kv() kvdbv1.KVServiceClient {
	return d.kvs[d.next.Add(1)%uint64(len(d.kvs))]
}

func (d *grpcDriver) Get(ctx context.Context, key []byte) error {
	_, err := d.kv().Get(ctx, &kvdbv1.GetRequest{Key: key})
	return err
}

func (d *grpcDriver) Put(ctx context.Context, key, value []byte) error {
	_, err := d.kv().Put(ctx, &kvdbv1.PutRequest{Key: key, Value: value})
	return err
}

func (d *grpcDriver) Delete(ctx context.Context, key []byte) error {
	_, err := d.kv().Delete(ctx, &kvdbv1.DeleteRequest{Key: key})
	return err
}

func (d *grpcDriver) Batch(context.Context, []bench.KV) error {
	return errors.New("grpcDriver: no batches")
}

func (d *grpcDriver) Txn(context.Context, []byte, []byte, []byte) error {
	return errors.New("grpcDriver: no transactions")
}

func (d *grpcDriver) Close() error {
	for _, c := range d.conns {
		c.Close()
	}
	return nil
}

// constKV answers every Put with a constant: the most this client shape
// can get from gRPC on the machine.
type constKV struct {
	kvdbv1.UnimplementedKVServiceServer
}

func (constKV) Put(context.Context, *kvdbv1.PutRequest) (*kvdbv1.PutResponse, error) {
	return &kvdbv1.PutResponse{Header: &kvdbv1.ResponseHeader{ClusterId: 1, MemberId: 1, Revision: 1}}, nil
}

// runConstServer is the harness re-executed as the constant-returning
// server, so it is a process of its own like the servers it is compared to.
// startConstServer starts this program's constserver command on a free
// loopback address.
func startConstServer() (*proc, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	addr := freeAddr()
	cs, err := start("const", self, "constserver", addr)
	if err != nil {
		return nil, "", err
	}
	time.Sleep(500 * time.Millisecond)
	return cs, addr, nil
}

func runConstServer(_ context.Context, _ *options) error {
	lis, err := net.Listen("tcp", flag.Arg(1))
	if err != nil {
		return err
	}
	s := grpc.NewServer()
	kvdbv1.RegisterKVServiceServer(s, constKV{})
	return s.Serve(lis)
}

func grpcPutRun(ctx context.Context, o *options, addr string) (*bench.Result, error) {
	d, err := newGRPCDriver(addr, tgtGRPCConns)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return bench.Run(ctx, d, bench.Config{Op: bench.OpPut, Clients: tgtGRPCClients, ValueSize: cmpValueSize, Keys: cmpKeys, KeyPrefix: "bench/", Duration: o.duration})
}

// system is one server measured by a target row.
type system struct {
	name  string
	run   func(context.Context) (*bench.Result, error)
	procs []*proc // whose CPU time is charged to the run
}

// cpuTicks is the user+system CPU time of the processes, in clock ticks
// (1/100 s).
func cpuTicks(ps []*proc) int64 {
	var t int64
	for _, p := range ps {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
		if err != nil {
			continue
		}
		_, rest, _ := strings.Cut(string(b), ") ")
		f := strings.Fields(rest)
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			t += u + s
		}
	}
	return t
}

// interleave runs every system once per round, o.runs rounds, and returns
// each one's median run.
func interleave(ctx context.Context, o *options, systems []system) (map[string]*bench.Result, error) {
	all := map[string][]*bench.Result{}
	for round := range o.runs {
		for _, s := range systems {
			before := cpuTicks(s.procs)
			r, err := s.run(ctx)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
			cpuUsPerOp := 0.0
			if r.Ops > 0 {
				cpuUsPerOp = float64(cpuTicks(s.procs)-before) * 1e4 / float64(r.Ops)
			}
			if r.Errors > 0 {
				fmt.Printf("  %s: %d errors %v\n", s.name, r.Errors, r.ErrorsByCode)
			}
			fmt.Printf("  round %d %-22s %9.0f ops/s  p50 %6.0f µs  p99 %6.0f µs  server CPU %5.1f µs/op\n", round+1, s.name, r.OpsPerSec, r.P50Us, r.P99Us, cpuUsPerOp)
			all[s.name] = append(all[s.name], r)
		}
	}
	med := map[string]*bench.Result{}
	for k, rs := range all {
		med[k] = medianOf(rs)
	}
	return med, nil
}

// builds are the KVDB builds measured: "new" (-bin) and, with -old-bin,
// "old".
func builds(o *options) []struct{ name, bin string } {
	b := []struct{ name, bin string }{{"new", o.bin}}
	if o.oldBin != "" {
		b = append(b, struct{ name, bin string }{"old", o.oldBin})
	}
	return b
}

func runTargets(ctx context.Context, o *options) error {
	if err := ensurePackages(); err != nil {
		return err
	}
	type line struct{ row, cmp string }
	var report []line
	emit := func(row, cmp string) {
		report = append(report, line{row, cmp})
		fmt.Printf("%s | %s\n", row, cmp)
	}
	oo := *o
	// Single nodes with and without fsync per write, per build.
	nodes := map[string]*cluster{}
	defer func() {
		for _, c := range nodes {
			c.stop()
		}
	}()
	for _, b := range builds(o) {
		for _, sync := range []bool{true, false} {
			oo.bin = b.bin
			c, err := startCluster(ctx, &oo, 1, "-sync-writes="+strconv.FormatBool(sync))
			if err != nil {
				return err
			}
			nodes[fmt.Sprintf("%s/sync=%v", b.name, sync)] = c
		}
	}

	var (
		systems []system
		med     map[string]*bench.Result
		err     error
	)
	want := func(section string) bool { return o.only == "" || slices.Contains(splitComma(o.only), section) }
	// 1. gRPC PUT with fsync per write against etcd (fsync per commit).
	if want("sync") {
		eaddr, epeer := freeAddr(), freeAddr()
		etcd, err := start("etcd", "etcd", "--data-dir={dir}/etcd", "--listen-client-urls=http://"+eaddr, "--advertise-client-urls=http://"+eaddr,
			"--listen-peer-urls=http://"+epeer, "--initial-advertise-peer-urls=http://"+epeer, "--initial-cluster=default=http://"+epeer, "--log-level=error")
		if err != nil {
			return err
		}
		defer etcd.stop()
		time.Sleep(time.Second)
		fmt.Printf("\n== gRPC PUT -sync-writes=true, %d clients / %d connections, %d-byte values, vs etcd (and, as ceilings, KVDB without fsync and a constant gRPC server)\n", tgtGRPCClients, tgtGRPCConns, cmpValueSize)
		var systems []system
		for _, b := range builds(o) {
			addr := nodes[b.name+"/sync=true"].addrs[0]
			systems = append(systems, system{"kvdb-" + b.name, func(ctx context.Context) (*bench.Result, error) { return grpcPutRun(ctx, o, addr) }, nodes[b.name+"/sync=true"].procs})
		}
		systems = append(systems, system{"etcd", func(ctx context.Context) (*bench.Result, error) {
			d, err := newEtcd(eaddr, tgtGRPCConns)
			if err != nil {
				return nil, err
			}
			defer d.Close()
			return bench.Run(ctx, d, bench.Config{Op: bench.OpPut, Clients: tgtGRPCClients, ValueSize: cmpValueSize, Keys: cmpKeys, KeyPrefix: "bench/", Duration: o.duration})
		}, []*proc{etcd}})
		// Two ceilings in the same rounds: the new build without fsync, and
		// a gRPC server that answers every Put with a constant.
		cs, caddr, err := startConstServer()
		if err != nil {
			return err
		}
		defer cs.stop()
		nosync := nodes["new/sync=false"]
		systems = append(systems,
			system{"kvdb-new-nosync", func(ctx context.Context) (*bench.Result, error) { return grpcPutRun(ctx, o, nosync.addrs[0]) }, nosync.procs},
			system{"const-grpc", func(ctx context.Context) (*bench.Result, error) { return grpcPutRun(ctx, o, caddr) }, []*proc{cs}})
		med, err = interleave(ctx, o, systems)
		if err != nil {
			return err
		}
		e := med["etcd"].OpsPerSec
		for _, b := range builds(o) {
			k := med["kvdb-"+b.name]
			emit(fmt.Sprintf("gRPC PUT sync (%s) | %.0f", b.name, k.OpsPerSec), fmt.Sprintf("etcd %.0f | %.2f×", e, k.OpsPerSec/e))
		}
		emit(fmt.Sprintf("ceiling: gRPC PUT no-sync (new) | %.0f", med["kvdb-new-nosync"].OpsPerSec), fmt.Sprintf("etcd %.0f | %.2f×", e, med["kvdb-new-nosync"].OpsPerSec/e))
		emit(fmt.Sprintf("ceiling: constant gRPC server | %.0f", med["const-grpc"].OpsPerSec), fmt.Sprintf("etcd %.0f | %.2f×", e, med["const-grpc"].OpsPerSec/e))
		cs.stop()
		etcd.stop()
	}

	// 2. gRPC PUT without fsync per write against a constant server.
	if want("nosync") {
		cs, caddr, err := startConstServer()
		if err != nil {
			return err
		}
		defer cs.stop()
		fmt.Printf("\n== gRPC PUT -sync-writes=false, %d clients / %d connections, vs a constant-returning gRPC server\n", tgtGRPCClients, tgtGRPCConns)
		systems = nil
		for _, b := range builds(o) {
			addr := nodes[b.name+"/sync=false"].addrs[0]
			systems = append(systems, system{"kvdb-" + b.name, func(ctx context.Context) (*bench.Result, error) { return grpcPutRun(ctx, o, addr) }, nodes[b.name+"/sync=false"].procs})
		}
		systems = append(systems, system{"const-grpc", func(ctx context.Context) (*bench.Result, error) { return grpcPutRun(ctx, o, caddr) }, []*proc{cs}})
		if med, err = interleave(ctx, o, systems); err != nil {
			return err
		}
		for _, b := range builds(o) {
			k := med["kvdb-"+b.name]
			emit(fmt.Sprintf("gRPC PUT no-sync (%s) | %.0f", b.name, k.OpsPerSec), fmt.Sprintf("constant gRPC server %.0f | %.2f×", med["const-grpc"].OpsPerSec, k.OpsPerSec/med["const-grpc"].OpsPerSec))
		}
		cs.stop()
	}

	// 3. Binary PUT with fsync per write against Redis appendfsync always.
	if want("binary") {
		raddr := freeAddr()
		_, rport, _ := strings.Cut(raddr, ":")
		redis, err := start("redis", "redis-server", "--port", rport, "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", "{dir}")
		if err != nil {
			return err
		}
		defer redis.stop()
		time.Sleep(300 * time.Millisecond)
		fmt.Printf("\n== binary PUT -sync-writes=true, %d connections (one client each, no pipelining), vs Redis appendfsync always\n", tgtBinaryConns)
		systems = nil
		for _, b := range builds(o) {
			addr := nodes[b.name+"/sync=true"].addrs[0]
			systems = append(systems, system{"kvdb-" + b.name, func(ctx context.Context) (*bench.Result, error) {
				d, err := bench.NewKVDB(ctx, []string{addr}, kvclient.ProtocolBinary, tgtBinaryConns, false, bench.Security{})
				if err != nil {
					return nil, err
				}
				defer d.Close()
				return bench.Run(ctx, d, bench.Config{Op: bench.OpPut, Clients: tgtBinaryConns, ValueSize: cmpValueSize, Keys: cmpKeys, KeyPrefix: "bench/", Duration: o.duration})
			}, nodes[b.name+"/sync=true"].procs})
		}
		systems = append(systems, system{"redis-aof-always", func(ctx context.Context) (*bench.Result, error) {
			return redisBenchShape(ctx, rport, tgtBinaryConns, 1, o.duration)
		}, []*proc{redis}})
		if med, err = interleave(ctx, o, systems); err != nil {
			return err
		}
		for _, b := range builds(o) {
			k := med["kvdb-"+b.name]
			emit(fmt.Sprintf("binary PUT sync (%s) | %.0f", b.name, k.OpsPerSec), fmt.Sprintf("Redis appendfsync always %.0f | %.2f×", med["redis-aof-always"].OpsPerSec, k.OpsPerSec/med["redis-aof-always"].OpsPerSec))
		}
		redis.stop()
	}
	for k, c := range nodes {
		c.stop()
		delete(nodes, k)
	}

	// 4. The 3-node rows of `make benchmark` (binary, 4 connections, 16
	// clients x 16 pipelined), per build, interleaved.
	if want("cluster") {
		fmt.Printf("\n== 3-node cluster rows (make benchmark's shape)\n")
		clusters := map[string]*cluster{}
		for _, b := range builds(o) {
			oo.bin = b.bin
			c, err := startCluster(ctx, &oo, 3)
			if err != nil {
				return err
			}
			clusters[b.name] = c
			defer c.stop()
		}
		base := shape{protocol: kvclient.ProtocolBinary, connections: 4, clients: 16, pipeline: 16}
		for _, row := range []struct {
			label  string
			op     bench.Op
			spread bool
		}{{"READ (leader only)", bench.OpGet, false}, {"READ (follower reads)", bench.OpGet, true}, {"WRITE", bench.OpPut, false}, {"BATCH", bench.OpBatch, false}} {
			s := base
			s.op, s.spread = row.op, row.spread
			if row.op == bench.OpBatch {
				s.pipeline = 1
			}
			systems = nil
			for _, b := range builds(o) {
				addrs := clusters[b.name].addrs
				systems = append(systems, system{"kvdb-" + b.name, func(ctx context.Context) (*bench.Result, error) {
					one := oo
					one.runs = 1
					return median(ctx, &one, addrs, s)
				}, clusters[b.name].procs})
			}
			fmt.Printf("-- %s\n", row.label)
			if med, err = interleave(ctx, o, systems); err != nil {
				return err
			}
			for _, b := range builds(o) {
				emit(fmt.Sprintf("3-node %s (%s) | %.0f", row.label, b.name, med["kvdb-"+b.name].OpsPerSec), "")
			}
		}
		for _, c := range clusters {
			c.stop()
		}
	}

	// 5. Failover: kill -9 the leader, time until a survivor acknowledges
	// a write.
	if want("failover") {
		fmt.Printf("\n== failover: leader killed (SIGKILL) -> first acknowledged write, %d kills per build\n", tgtFailovers)
		for _, b := range builds(o) {
			oo.bin = b.bin
			ms, err := failovers(ctx, &oo, tgtFailovers)
			if err != nil {
				return fmt.Errorf("failover %s: %w", b.name, err)
			}
			slices.Sort(ms)
			emit(fmt.Sprintf("failover (%s) | median %d ms, max %d ms", b.name, ms[len(ms)/2], ms[len(ms)-1]), fmt.Sprint(ms))
		}
	}

	fmt.Printf("\n| row | ops/s | reference | ratio |\n|---|---|---|---|\n")
	for _, l := range report {
		fmt.Printf("| %s | %s |\n", l.row, l.cmp)
	}
	return nil
}

// failovers starts a fresh 3-node cluster per kill: kills its leader with
// SIGKILL and measures until one of the others acknowledges a write.
func failovers(ctx context.Context, o *options, kills int) ([]int64, error) {
	var out []int64
	for range kills {
		c, err := startCluster(ctx, o, 3)
		if err != nil {
			return nil, err
		}
		l := c.leader(ctx)
		if l < 0 {
			c.stop()
			return nil, errors.New("no leader")
		}
		var survivors []string
		for i, a := range c.addrs {
			if i != l {
				survivors = append(survivors, a)
			}
		}
		cl, err := kvclient.New(ctx, kvclient.Options{Endpoints: survivors, PoolSize: 1, MaxRetries: 1})
		if err != nil {
			c.stop()
			return nil, err
		}
		// Warm: a write through the survivors before the kill (a follower
		// may not know the new leader for a moment: retry).
		for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
			wctx, cancel := context.WithTimeout(ctx, time.Second)
			_, err = cl.Put(wctx, []byte("failover"), []byte("before"))
			cancel()
			if err == nil || time.Since(start) > 10*time.Second {
				break
			}
		}
		if err != nil {
			cl.Close()
			c.stop()
			return nil, fmt.Errorf("write before the kill: %w", err)
		}
		killed := time.Now()
		_ = c.procs[l].cmd.Process.Signal(syscall.SIGKILL)
		for {
			wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			_, err := cl.Put(wctx, []byte("failover"), []byte("after"))
			cancel()
			if err == nil {
				break
			}
			if time.Since(killed) > 20*time.Second {
				cl.Close()
				c.stop()
				return nil, fmt.Errorf("no write acknowledged 20 s after the kill: %w", err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		out = append(out, time.Since(killed).Milliseconds())
		cl.Close()
		c.stop()
	}
	return out, nil
}

// redisBenchShape runs redis-benchmark SET with clients connections and
// pipeline requests in flight on each, for about d.
func redisBenchShape(ctx context.Context, port string, clients, pipeline int, d time.Duration) (*bench.Result, error) {
	run := func(n int) (*bench.Result, error) {
		cmd := exec.CommandContext(ctx, "redis-benchmark", "-h", "127.0.0.1", "-p", port, "-c", strconv.Itoa(clients), "-n", strconv.Itoa(n),
			"-d", strconv.Itoa(cmpValueSize), "-r", strconv.Itoa(cmpKeys), "-P", strconv.Itoa(pipeline), "-t", "set", "--csv")
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("redis-benchmark: %w", err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) < 2 {
			return nil, fmt.Errorf("redis-benchmark output: %q", out)
		}
		head := strings.Split(lines[0], ",")
		vals := strings.Split(lines[1], ",")
		r := &bench.Result{Ops: int64(n)}
		for i, h := range head {
			if i >= len(vals) {
				break
			}
			v, _ := strconv.ParseFloat(strings.Trim(vals[i], `"`), 64)
			switch strings.Trim(h, `"`) {
			case "rps":
				r.OpsPerSec = v
			case "p50_latency_ms":
				r.P50Us = v * 1000
			case "p99_latency_ms":
				r.P99Us = v * 1000
			}
		}
		return r, nil
	}
	probe, err := run(5_000)
	if err != nil {
		return nil, err
	}
	return run(max(int(probe.OpsPerSec*d.Seconds()), 5_000))
}
