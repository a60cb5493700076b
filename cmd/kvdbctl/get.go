package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

func newGetCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "get KEY",
		Short: "Print the value of a key",
		Long: `Print the value of KEY followed by a newline, bytes as stored.
A missing key prints "key not found" on stderr and exits 1.
With -o json prints key, value, create_revision, mod_revision and version.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.get(cmd.Context(), cmd.OutOrStdout(), args[0])
		},
	}
}

// get reads key and prints it; shared by the subcommand and the REPL. A
// missing key is returned as errKeyNotFound for the caller to present.
func (a *app) get(ctx context.Context, w io.Writer, key string) error {
	resp, err := invoke(ctx, a, func(ctx context.Context, c *client) (*kvdbv1.GetResponse, error) {
		return c.kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte(key), Consistency: a.consistency})
	})
	if err != nil {
		if status.Code(err) == codes.NotFound {
			return fmt.Errorf("get %q: %w", key, errKeyNotFound)
		}
		return fmt.Errorf("get %q: %w", key, err)
	}
	if a.output == outputJSON {
		return writeJSON(w, toKVJSON(resp.GetKv()))
	}
	return writeLine(w, resp.GetKv().GetValue())
}
