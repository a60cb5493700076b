package main

import (
	"context"
	"fmt"
	"os"
	"time"

	kvclient "github.com/kvdb/kvdb/client"
	"github.com/kvdb/kvdb/internal/bench"
)

var stdout = os.Stdout

// stressCap is the node's -max-inflight-requests in the stress test: low
// enough that 2,000 connections pipelining 8 requests each overrun it.
const stressCap = 2000

func shortRun(ctx context.Context, addr string, conns, clients, pipeline int, d time.Duration) (*bench.Result, error) {
	drv, err := bench.NewKVDB(ctx, []string{addr}, kvclient.ProtocolBinary, conns, false, bench.Security{})
	if err != nil {
		return nil, err
	}
	defer drv.Close()
	return bench.Run(ctx, drv, bench.Config{Op: bench.OpPut, Clients: clients, Pipeline: pipeline, ValueSize: 256,
		Keys: 10_000, KeyPrefix: "stress/", Duration: d, NoPreload: true})
}

// runStress: a baseline, then 2,000 connections offering more than the node
// can serve, then the baseline load again until throughput is back.
func runStress(ctx context.Context, o *options) error {
	c, err := startCluster(ctx, o, 1, fmt.Sprintf("-max-inflight-requests=%d", stressCap))
	if err != nil {
		return err
	}
	defer c.stop()
	node, addr := c.procs[0], c.addrs[0]
	base, err := shortRun(ctx, addr, 4, 16, 4, o.duration)
	if err != nil {
		return err
	}
	fmt.Printf("baseline: %.0f ops/s, p99 %.0f µs, rss %d MB\n", base.OpsPerSec, base.P99Us, node.rssMB())

	var peakRSS int64
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			peakRSS = max(peakRSS, node.rssMB())
			select {
			case <-stopWatch:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	over, err := shortRun(ctx, addr, 2000, 2000, 8, o.duration)
	close(stopWatch)
	<-watched
	if err != nil {
		return fmt.Errorf("overload run: %w", err)
	}
	fmt.Printf("overload (2000 connections x 8 pipelined): %.0f ops/s served, p99 %.0f µs, errors %v, peak rss %d MB\n",
		over.OpsPerSec, over.P99Us, over.ErrorsByCode, peakRSS)
	if !node.alive() {
		return fmt.Errorf("the node died under overload (log in %s)", node.dir)
	}
	if peakRSS > o.memLimit {
		return fmt.Errorf("peak rss %d MB over the %d MB bound", peakRSS, o.memLimit)
	}
	if over.ErrorsByCode["RESOURCE_EXHAUSTED"] == 0 {
		return fmt.Errorf("no request was turned away with RESOURCE_EXHAUSTED; the offered load did not exceed the cap")
	}
	for code, n := range over.ErrorsByCode {
		if code != "RESOURCE_EXHAUSTED" {
			return fmt.Errorf("%d requests failed with %s; overload must only cause RESOURCE_EXHAUSTED", n, code)
		}
	}

	deadline := time.Now().Add(o.recoverIn)
	for {
		r, err := shortRun(ctx, addr, 4, 16, 4, time.Second)
		if err != nil {
			return err
		}
		fmt.Printf("after: %.0f ops/s (baseline %.0f)\n", r.OpsPerSec, base.OpsPerSec)
		if r.OpsPerSec >= 0.5*base.OpsPerSec && r.Errors == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("throughput not back to half the baseline within %v", o.recoverIn)
		}
	}
}
