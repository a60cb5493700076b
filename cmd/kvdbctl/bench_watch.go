package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/kvdb/kvdb/internal/bench"
)

func newBenchWatchCmd(a *app) *cobra.Command {
	var (
		cfg       bench.WatchConfig
		serverPID int
		asJSON    bool
	)
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Open watchers, write at a rate and measure the delivery of the events",
		Long: `bench watch opens --watchers watchers on the first node of --address
(--mode keys: each on a key of its own, the writes spread over those keys;
prefix: all on one prefix every write goes to; idle: on keys nobody writes,
while the writes go elsewhere), then writes --rate puts per second (0: as fast
as --writers can) for --duration and reports the writes, the events delivered
and the delivery latency: from the write's acknowledgement to the event's
arrival, and from the write's sending. --slow-watchers adds watchers on the
written keys whose streams are never read. With a node on this machine it
reports the node's resident memory before and after the watchers opened.
The keys written (under --key-prefix) stay in the store.`,
		Example: `  kvdbctl bench watch --mode keys --watchers 10000 --rate 1000 --duration 30s
  kvdbctl bench watch --mode prefix --watchers 100 --rate 1000 --duration 30s
  kvdbctl bench watch --mode idle --watchers 10000 --duration 20s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Watchers < 0 || cfg.SlowWatchers < 0 || cfg.Rate < 0 {
				return &usageError{err: errors.New("--watchers, --slow-watchers and --rate must not be negative")}
			}
			cfg.Endpoints = a.endpointList()
			cfg.Security = bench.Security{TLS: a.tls, Username: a.user, Password: a.password}
			cfg.ServerPID = a.benchServerPID(serverPID)
			res, err := bench.RunWatch(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if asJSON || a.output == outputJSON {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			return res.WriteText(cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Mode, "mode", bench.WatchKeys, "keys, prefix or idle")
	fl.IntVar(&cfg.Watchers, "watchers", 1000, "watchers to open")
	fl.IntVar(&cfg.WatchersPerStream, "watchers-per-stream", 1, "watchers sharing one stream")
	fl.IntVar(&cfg.Connections, "connections", 16, "gRPC connections the streams are spread over")
	fl.IntVar(&cfg.SlowWatchers, "slow-watchers", 0, "watchers on the written keys that are never read")
	fl.IntVar(&cfg.Rate, "rate", 1000, "writes per second (0: as fast as the writers can)")
	fl.IntVar(&cfg.Writers, "writers", 16, "concurrent writers")
	fl.IntVar(&cfg.ValueSize, "value-size", 100, "value size in bytes (at least 8: the send time)")
	fl.DurationVar(&cfg.Duration, "duration", 0, "how long to write (default 10s)")
	fl.StringVar(&cfg.KeyPrefix, "key-prefix", "wb/", "prefix of every key written and watched")
	fl.IntVar(&serverPID, "server-pid", 0, "server process whose memory is reported; 0: the local listener on --address's port; -1: none")
	fl.BoolVar(&asJSON, "json", false, "print one JSON object (same as -o json)")
	return cmd
}
