// Command benchharness runs KVDB's load targets against real kvdb-server
// processes on loopback: `make benchmark` (the README's performance tables), `make
// load-test`, `make stress-test` and `make bench-compare` (Redis and etcd
// beside KVDB, written to docs/benchmarks.md). Every server it starts lives
// in a temporary directory and is killed when it returns; every load loop
// is bounded by -duration.
//
//	go run ./test/benchharness [flags] tables|load|stress|compare|targets
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

type options struct {
	bin       string
	oldBin    string
	only      string
	duration  time.Duration
	runs      int
	conns     []int
	out       string
	validate  bool
	memLimit  int64
	recoverIn time.Duration
}

func main() {
	var o options
	var conns string
	flag.StringVar(&o.bin, "bin", "./bin", "directory holding kvdb-server and kvdbctl")
	flag.StringVar(&o.oldBin, "old-bin", "", "targets: also measure the build in this directory, interleaved with -bin")
	flag.StringVar(&o.only, "only", "", "targets: only these sections (sync,nosync,binary,cluster,failover)")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "length of each measured run (load: of the whole test)")
	flag.IntVar(&o.runs, "runs", 3, "runs per figure; the median is reported")
	flag.StringVar(&conns, "conns", "1,4,16,64", "connection counts for compare")
	flag.StringVar(&o.out, "out", "docs/benchmarks.md", "report written by compare")
	flag.BoolVar(&o.validate, "validation", false, "mark the report as a short validation run, not a measurement")
	flag.Int64Var(&o.memLimit, "stress-max-rss-mb", 1024, "stress: the node's resident memory must stay under this")
	flag.DurationVar(&o.recoverIn, "stress-recover", 10*time.Second, "stress: throughput must be back within this after the overload")
	flag.Parse()
	var err error
	if o.conns, err = parseInts(conns); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var run func(context.Context, *options) error
	switch flag.Arg(0) {
	case "tables":
		run = runTables
	case "load":
		run = runLoad
	case "stress":
		run = runStress
	case "compare":
		run = runCompare
	case "targets":
		run = runTargets
	case "constserver":
		run = runConstServer
	default:
		fmt.Fprintln(os.Stderr, "usage: benchharness [flags] tables|load|stress|compare|targets")
		os.Exit(2)
	}
	err = run(ctx, &o)
	stopAll()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: FAIL: %v\n", flag.Arg(0), err)
		os.Exit(1)
	}
	fmt.Printf("%s: PASS\n", flag.Arg(0))
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitComma(s) {
		var n int
		if _, err := fmt.Sscan(f, &n); err != nil || n <= 0 {
			return nil, fmt.Errorf("bad number %q in %q", f, s)
		}
		out = append(out, n)
	}
	return out, nil
}
