package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

func newGetCmd(a *app) *cobra.Command {
	var outputFile string
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Print the value of a key",
		Long: `Print the value of KEY followed by a newline, bytes as stored.
--output-file FILE writes the value to FILE instead, exactly (no newline
added), and prints nothing: kvdbctl put k --value-file f and
kvdbctl get k --output-file g leave f and g identical.
A missing key prints "key not found" on stderr and exits 1.
With -o json prints key, value, create_revision, mod_revision and version.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("output-file") {
				return a.getToFile(cmd.Context(), args[0], outputFile)
			}
			return a.get(cmd.Context(), cmd.OutOrStdout(), args[0])
		},
	}
	cmd.Flags().StringVar(&outputFile, "output-file", "", "write the value, exactly as stored, to this file")
	return cmd
}

// getToFile writes key's value to path. The file is written only once the
// value is in hand, so a missing key leaves no file behind.
func (a *app) getToFile(ctx context.Context, key, path string) error {
	if path == "" {
		return &usageError{err: errors.New("--output-file must not be empty")}
	}
	resp, err := invoke(ctx, a, func(ctx context.Context, c *client) (*kvdbv1.GetResponse, error) {
		return c.kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte(key), Consistency: a.consistency})
	})
	if err != nil {
		if status.Code(err) == codes.NotFound {
			return fmt.Errorf("get %q: %w", key, errKeyNotFound)
		}
		return fmt.Errorf("get %q: %w", key, err)
	}
	if err := os.WriteFile(path, resp.GetKv().GetValue(), 0o644); err != nil {
		return fmt.Errorf("--output-file: %w", err)
	}
	return nil
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
