package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/chzyer/readline"
	"github.com/spf13/cobra"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/bench"
)

// benchFlags are the flags of `kvdbctl bench`; protocol, consistency and
// address are the global ones.
type benchFlags struct {
	op          string
	connections int
	serverPID   int
	cfg         bench.Config
	json        bool
	cleanup     bool
}

func newBenchCmd(a *app) *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load the node (or cluster) and report throughput, latency percentiles and errors",
		Long: `bench sends a workload for --duration or until --total requests, then prints
throughput, latency p50/p95/p99/max in microseconds and the errors by code.
Reads (get, mixed, delete, txn) first preload the --keys key space. --address
may list several nodes (a,b,c): the client sends to the leader among them;
when a request fails with UNAVAILABLE (its node stopped or lost its
leadership) it counts as an error and the client finds the leader again.
After an UNAVAILABLE a client pauses before its next request, 10 ms doubling
up to 250 ms.
A progress bar is drawn when stdout and stderr are a terminal.
The keys written (--key-prefix then 8 digits, --keys of them) stay in the
store, which a line on stderr says; --cleanup deletes them after the run.`,
		Example: `  kvdbctl bench --op put --protocol binary --clients 32 --pipeline 16 --duration 10s
  kvdbctl bench --op get --consistency s --total 100000 --json
  kvdbctl bench --op batch --value-size 128 --address n1:8080,n2:8080,n3:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			op, err := bench.ParseOp(f.op)
			if err != nil {
				return &usageError{err: err}
			}
			f.cfg.Op = op
			if f.connections <= 0 || f.cfg.Clients <= 0 || f.cfg.Pipeline <= 0 || f.cfg.Keys <= 0 || f.cfg.ValueSize < 0 {
				return &usageError{err: fmt.Errorf("--connections, --clients, --pipeline and --keys must be positive, --value-size not negative")}
			}
			fl := cmd.Flags()
			if fl.Changed("total") && f.cfg.Total <= 0 || fl.Changed("batch-size") && f.cfg.BatchSize <= 0 || fl.Changed("duration") && f.cfg.Duration <= 0 {
				return &usageError{err: fmt.Errorf("--total, --batch-size and --duration must be positive when given")}
			}
			if err := f.cfg.Validate(); err != nil {
				return &usageError{err: err}
			}
			if f.cfg.ValueSize == 0 {
				f.cfg.ValueSize = -1 // bench.Config reads 0 as "default"; -1 is empty values
			}
			if a.stdoutIsTerminal() && a.stderrIsTerminal() && !f.json && a.output != outputJSON {
				f.cfg.Progress = progressPrinter(a.stderr)
			}
			f.cfg.ServerPID = a.benchServerPID(f.serverPID)
			res, err := a.runBench(cmd.Context(), f.connections, f.cfg)
			if err != nil {
				return err
			}
			if f.json || a.output == outputJSON {
				err = writeJSON(cmd.OutOrStdout(), res)
			} else {
				err = res.WriteText(cmd.OutOrStdout())
			}
			if err != nil {
				return err
			}
			if res.Requests == 0 && res.Errors > 0 {
				// Nothing succeeded: the run measured nothing and wrote nothing.
				return fmt.Errorf("every request failed (%d): %s", res.Errors, firstErrorCode(res.ErrorsByCode))
			}
			if !f.cleanup {
				return writeText(a.stderr, "kvdbctl bench: left its keys %s in the store (--cleanup deletes them after a run)\n", benchKeys(&f.cfg))
			}
			n, err := a.benchCleanup(cmd.Context(), &f.cfg)
			if err != nil {
				return fmt.Errorf("bench --cleanup: %w", err)
			}
			return writeText(a.stderr, "kvdbctl bench: deleted %d keys %s\n", n, benchKeys(&f.cfg))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.op, "op", "put", "workload: get, put, delete, mixed (50% get, 50% put), batch (100 puts each) or txn")
	fl.IntVar(&f.connections, "connections", 4, "connections to the node")
	fl.IntVar(&f.cfg.Clients, "clients", 16, "concurrent clients sharing the connections")
	fl.IntVar(&f.cfg.Pipeline, "pipeline", 1, "requests each client keeps in flight (pipelined on --protocol binary)")
	fl.IntVar(&f.cfg.ValueSize, "value-size", 256, "value size in bytes (at most 64 MiB, the largest value a server can store)")
	fl.IntVar(&f.cfg.Keys, "keys", 10_000, "size of the key space")
	fl.StringVar(&f.cfg.KeyPrefix, "key-prefix", "bench/", "prefix of every key")
	fl.IntVar(&f.cfg.BatchSize, "batch-size", 100, "puts per batch for --op batch")
	fl.DurationVar(&f.cfg.Duration, "duration", 0, "how long to run (default 10s when --total is not given either)")
	fl.Int64Var(&f.cfg.Total, "total", 0, "stop after this many requests")
	fl.BoolVar(&f.json, "json", false, "print one JSON object (same as -o json)")
	fl.BoolVar(&f.cleanup, "cleanup", false, "delete the keys the run wrote once it is over")
	fl.IntVar(&f.serverPID, "server-pid", 0, "server process whose CPU time is reported beside the load generator's; 0: the process listening on --address's port on this machine, if any; -1: none")
	cmd.AddCommand(newBenchWatchCmd(a))
	return cmd
}

// benchServerPID is the server process to report CPU for: pid when given,
// else the local listener on the first address's port (0 when there is
// none: the server runs elsewhere, or as another user).
func (a *app) benchServerPID(pid int) int {
	if pid != 0 {
		return max(pid, 0)
	}
	first, _, _ := strings.Cut(a.address, ",")
	host, port, err := net.SplitHostPort(strings.TrimSpace(dialTarget(first)))
	if err != nil || !isLocalHost(host) {
		return 0
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return 0
	}
	found, err := bench.ListenerPID(n)
	if err != nil {
		return 0
	}
	return found
}

// runBench connects with the global --address, --protocol and --consistency
// and runs cfg.
func (a *app) runBench(ctx context.Context, connections int, cfg bench.Config) (*bench.Result, error) {
	endpoints := a.endpointList()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d, err := bench.NewKVDB(dctx, endpoints, a.protocol, connections, a.consistency == kvdbv1.Consistency_CONSISTENCY_SERIALIZABLE,
		bench.Security{TLS: a.tls, Username: a.user, Password: a.password})
	if err != nil {
		return nil, &unreachableError{address: a.address, err: err}
	}
	defer d.Close()
	if cfg.Op == bench.OpTxn {
		if err := d.EnableTxn(); err != nil {
			return nil, err
		}
	}
	return bench.Run(ctx, d, cfg)
}

// benchKeys names the key space of cfg for people: "bench/00000000 … bench/00009999".
func benchKeys(cfg *bench.Config) string {
	return fmt.Sprintf("%s … %s", cfg.Key(0), cfg.Key(benchKeyCount(cfg)-1))
}

// benchKeyCount is the size of cfg's key space.
func benchKeyCount(cfg *bench.Config) int {
	if cfg.Keys <= 0 {
		return 10_000 // bench.Config's default
	}
	return cfg.Keys
}

// benchCleanupBatch is how many keys one delete batch names.
const benchCleanupBatch = 1000

// benchCleanup deletes exactly the keys of cfg's key space (not the whole
// prefix, which may hold other keys) and returns how many existed.
func (a *app) benchCleanup(ctx context.Context, cfg *bench.Config) (int64, error) {
	keys := benchKeyCount(cfg)
	var deleted int64
	for start := 0; start < keys; start += benchCleanupBatch {
		ops := make([]*kvdbv1.BatchOp, 0, benchCleanupBatch)
		for i := start; i < min(start+benchCleanupBatch, keys); i++ {
			ops = append(ops, &kvdbv1.BatchOp{Op: &kvdbv1.BatchOp_Delete{Delete: &kvdbv1.BatchDelete{Key: cfg.Key(i)}}})
		}
		resp, err := invoke(ctx, a, func(ctx context.Context, c *client) (*kvdbv1.BatchResponse, error) {
			return c.kv.Batch(ctx, &kvdbv1.BatchRequest{Ops: ops})
		})
		if err != nil {
			return deleted, err
		}
		deleted += resp.GetDeleted()
	}
	return deleted, nil
}

// progressPrinter redraws a progress bar in place on w.
func progressPrinter(w io.Writer) func(bench.Progress) {
	return func(p bench.Progress) {
		end := ""
		if p.Fraction() >= 1 {
			end = "\n"
		}
		fmt.Fprintf(w, "\r%s%s", bench.ProgressBar(p, 40), end)
	}
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && readline.IsTerminal(int(f.Fd()))
}

func (a *app) stdoutIsTerminal() bool { return isTerminal(a.stdout) }
func (a *app) stderrIsTerminal() bool { return isTerminal(a.stderr) }

// execBenchmark is the shell's BENCHMARK ops [prefix] [valuesize]: ops puts
// of valuesize-byte values over ops keys, then ops gets of the same keys,
// through the same loop as `kvdbctl bench`.
func (a *app) execBenchmark(ctx context.Context, w io.Writer, args string) error {
	fields := strings.Fields(args)
	usage := fmt.Errorf("usage: BENCHMARK ops [prefix [valuesize]] [CLEANUP]")
	cleanup := false
	if n := len(fields); n > 1 && (strings.EqualFold(fields[n-1], "CLEANUP") || fields[n-1] == "--cleanup") {
		cleanup, fields = true, fields[:n-1]
	}
	if len(fields) < 1 || len(fields) > 3 {
		return usage
	}
	var ops, size int
	if _, err := fmt.Sscan(fields[0], &ops); err != nil || ops <= 0 {
		return fmt.Errorf("invalid ops %q: %w", fields[0], usage)
	}
	cfg := bench.Config{Total: int64(ops), Keys: ops, KeyPrefix: "bench_key_", ValueSize: 256, Clients: 16, Duration: bench.MaxDuration}
	if len(fields) >= 2 {
		cfg.KeyPrefix = fields[1]
	}
	if len(fields) == 3 {
		if _, err := fmt.Sscan(fields[2], &size); err != nil || size < 0 {
			return fmt.Errorf("invalid valuesize %q: %w", fields[2], usage)
		}
		cfg.ValueSize = size
		if size == 0 {
			cfg.ValueSize = -1
		}
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("invalid valuesize %q: %w", fields[2], err)
		}
	}
	for _, op := range []bench.Op{bench.OpPut, bench.OpGet} {
		cfg.Op = op
		cfg.NoPreload = true // the put pass wrote the keys
		cfg.Sequential = true
		res, err := a.runBench(ctx, 4, cfg)
		if err != nil {
			return err
		}
		if a.output == outputJSON {
			if err := writeJSON(w, res); err != nil {
				return err
			}
			continue
		}
		if err := res.WriteText(w); err != nil {
			return err
		}
	}
	// With -o json the output is the two JSON documents: the note goes
	// to stderr.
	note := w
	if a.output == outputJSON && a.stderr != nil {
		note = a.stderr
	}
	if !cleanup {
		return writeText(note, "(left %d keys %s in the store; add CLEANUP to delete them after the run)\n", ops, benchKeys(&cfg))
	}
	n, err := a.benchCleanup(ctx, &cfg)
	if err != nil {
		return fmt.Errorf("BENCHMARK CLEANUP: %w", err)
	}
	return writeText(note, "(deleted %d keys %s)\n", n, benchKeys(&cfg))
}

// isLocalHost reports whether host names this machine: localhost, a
// loopback address or one of its interfaces' addresses.
func isLocalHost(host string) bool {
	if host == "" || host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// firstErrorCode names the codes of a run's failures, most frequent
// first: "INVALID_ARGUMENT 5".
func firstErrorCode(byCode map[string]int64) string {
	codes := make([]string, 0, len(byCode))
	for c := range byCode {
		codes = append(codes, c)
	}
	sort.Slice(codes, func(i, j int) bool {
		if byCode[codes[i]] != byCode[codes[j]] {
			return byCode[codes[i]] > byCode[codes[j]]
		}
		return codes[i] < codes[j]
	})
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = fmt.Sprintf("%s %d", c, byCode[c])
	}
	return strings.Join(parts, ", ")
}
