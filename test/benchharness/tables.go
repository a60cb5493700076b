package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	kvclient "github.com/kvdb/kvdb/client"
	"github.com/kvdb/kvdb/internal/bench"
)

// shape is one load: the same for every system it is run against.
type shape struct {
	label       string
	op          bench.Op
	protocol    kvclient.Protocol
	connections int
	clients     int
	pipeline    int
	serial      bool
	// spread sends reads to every node (follower reads), writes to the leader.
	spread bool
}

// median runs s o.runs times against endpoints and returns the run with the
// median throughput.
func median(ctx context.Context, o *options, endpoints []string, s shape) (*bench.Result, error) {
	var results []*bench.Result
	for range o.runs {
		var d interface {
			bench.Driver
			bench.Pipeliner
		}
		var err error
		if s.spread && len(endpoints) > 1 {
			d, err = bench.NewSpread(ctx, endpoints, s.protocol, s.connections, s.serial, bench.Security{})
		} else {
			d, err = bench.NewKVDB(ctx, endpoints, s.protocol, s.connections, s.serial, bench.Security{})
		}
		if err != nil {
			return nil, err
		}
		res, err := bench.Run(ctx, d, bench.Config{Op: s.op, Clients: s.clients, Pipeline: s.pipeline,
			ValueSize: 256, Keys: 10_000, KeyPrefix: "bench/", Duration: o.duration})
		d.Close()
		if err != nil {
			return nil, err
		}
		results = append(results, res)
	}
	return medianOf(results), nil
}

func medianOf(rs []*bench.Result) *bench.Result {
	slices.SortFunc(rs, func(a, b *bench.Result) int {
		switch {
		case a.OpsPerSec < b.OpsPerSec:
			return -1
		case a.OpsPerSec > b.OpsPerSec:
			return 1
		}
		return 0
	})
	return rs[len(rs)/2]
}

// runTables measures the README's two performance tables (single node
// and 3-node cluster) on this machine: binary
// protocol, 4 connections, 16 clients each pipelining 16 requests.
func runTables(ctx context.Context, o *options) error {
	base := shape{protocol: kvclient.ProtocolBinary, connections: 4, clients: 16, pipeline: 16}
	print := func(title string, endpoints []string, rows []shape) error {
		fmt.Printf("\n### %s\n| Operation | Throughput (ops/sec) | Latency p50 (µs) | p99 (µs) | errors |\n|---|---|---|---|---|\n", title)
		for _, r := range rows {
			res, err := median(ctx, o, endpoints, r)
			if err != nil {
				return fmt.Errorf("%s: %w", r.label, err)
			}
			fmt.Printf("| %s | %.0f | %.0f | %.0f | %d |\n", r.label, res.OpsPerSec, res.P50Us, res.P99Us, res.Errors)
		}
		return nil
	}
	with := func(label string, op bench.Op) shape { s := base; s.label, s.op = label, op; return s }

	single, err := startCluster(ctx, o, 1)
	if err != nil {
		return err
	}
	err = print("Single node", single.addrs, []shape{with("GET", bench.OpGet), with("PUT", bench.OpPut), with("DELETE", bench.OpDelete), with("MIXED", bench.OpMixed)})
	single.stop()
	if err != nil {
		return err
	}
	three, err := startCluster(ctx, o, 3)
	if err != nil {
		return err
	}
	defer three.stop()
	batch := with("BATCH", bench.OpBatch)
	batch.pipeline = 1 // 100 puts per request already
	if err := print("Cluster (3 nodes)", three.addrs, []shape{with("READ", bench.OpGet), with("WRITE", bench.OpPut), batch}); err != nil {
		return err
	}
	fmt.Printf("\n%d-second runs, median of %d; binary protocol, 4 connections, 16 clients x 16 pipelined, 256-byte values, 10,000 keys; BATCH counts keys (100 per request, not pipelined); READ is linearizable, on the leader (benchharness targets also measures follower reads).\n", int(o.duration.Seconds()), o.runs)
	return nil
}

// runLoad runs a mixed workload on a 3-process cluster for o.duration and
// hands leadership to another node half way. Only UNAVAILABLE, retried, is
// allowed.
func runLoad(ctx context.Context, o *options) error {
	c, err := startCluster(ctx, o, 3)
	if err != nil {
		return err
	}
	defer c.stop()
	d, err := bench.NewKVDB(ctx, c.addrs, kvclient.ProtocolBinary, 4, false, bench.Security{})
	if err != nil {
		return err
	}
	defer d.Close()
	transferred := make(chan error, 1)
	go func() {
		select {
		case <-time.After(o.duration / 2):
		case <-ctx.Done():
			transferred <- ctx.Err()
			return
		}
		from := c.leader(ctx)
		to := c.names[(from+1)%len(c.names)]
		out, err := exec.CommandContext(ctx, filepath.Join(o.bin, "kvdbctl"), "--address", c.addrs[max(from, 0)], "leader", "transfer", to).CombinedOutput()
		fmt.Printf("leader transfer %s -> %s: %s", c.names[max(from, 0)], to, out)
		if err != nil {
			err = fmt.Errorf("leader transfer: %w: %s", err, strings.TrimSpace(string(out)))
		}
		transferred <- err
	}()
	res, err := bench.Run(ctx, d, bench.Config{Op: bench.OpMixed, Clients: 16, Pipeline: 4, ValueSize: 256, Keys: 10_000,
		KeyPrefix: "load/", Duration: o.duration, RetryUnavailable: true})
	if err != nil {
		return err
	}
	if err := <-transferred; err != nil {
		return err
	}
	_ = res.WriteText(stdout)
	if res.Errors > 0 {
		return fmt.Errorf("%d errors besides retried UNAVAILABLE: %v", res.Errors, res.ErrorsByCode)
	}
	if res.Ops == 0 {
		return fmt.Errorf("no operation succeeded")
	}
	return nil
}
