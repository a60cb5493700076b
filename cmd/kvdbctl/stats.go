package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

func newStatsCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Print the server statistics (the STATS JSON)",
		Long: `Print the node's statistics as indented JSON in the documented STATS
shape: storage, network, raft and metrics sections. Always JSON, whatever
--output says, because the shape is the interface.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.stats(cmd.Context(), cmd.OutOrStdout())
		},
	}
}

// stats fetches and prints the STATS document; shared with the REPL.
func (a *app) stats(ctx context.Context, w io.Writer) error {
	resp, err := invoke(ctx, a, func(ctx context.Context, c *client) (*kvdbv1.StatsResponse, error) {
		return c.admin.Stats(ctx, &kvdbv1.StatsRequest{})
	})
	if err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	return writeJSON(w, StatsToJSON(resp))
}
