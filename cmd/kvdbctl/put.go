package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

func newPutCmd(a *app) *cobra.Command {
	var prevKV bool
	cmd := &cobra.Command{
		Use:   "put KEY VALUE",
		Short: "Store a value under a key",
		Long: `Store VALUE under KEY, creating or replacing it, and print OK.
With --prev-kv the previous value (if any) is printed on the next line.
With -o json prints the revision the put created (and prev_kv).
A value starting with a dash needs -- first: kvdbctl put k -- -1`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.put(cmd.Context(), cmd.OutOrStdout(), args[0], args[1], prevKV)
		},
	}
	cmd.Flags().BoolVar(&prevKV, "prev-kv", false, "also print the value the key had before")
	return cmd
}

// putJSON is the -o json answer of put.
type putJSON struct {
	Revision int64   `json:"revision"`
	PrevKV   *kvJSON `json:"prev_kv,omitempty"`
}

// put stores value under key; shared by the subcommand and the REPL.
func (a *app) put(ctx context.Context, w io.Writer, key, value string, prevKV bool) error {
	resp, err := invoke(ctx, a, func(ctx context.Context, c *client) (*kvdbv1.PutResponse, error) {
		return c.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte(key), Value: []byte(value), PrevKv: prevKV})
	})
	if err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	if a.output == outputJSON {
		out := putJSON{Revision: resp.GetHeader().GetRevision()}
		if prev := resp.GetPrevKv(); prev != nil {
			p := toKVJSON(prev)
			out.PrevKV = &p
		}
		return writeJSON(w, out)
	}
	if err := writeText(w, "OK\n"); err != nil {
		return err
	}
	if prev := resp.GetPrevKv(); prevKV && prev != nil {
		return writeLine(w, prev.GetValue())
	}
	return nil
}
