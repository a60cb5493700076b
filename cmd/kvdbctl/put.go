package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

func newPutCmd(a *app) *cobra.Command {
	var (
		prevKV    bool
		valueFile string
		lease     string
		ttl       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "put KEY VALUE | put KEY - | put KEY --value-file FILE",
		Short: "Store a value under a key",
		Long: `Store VALUE under KEY, creating or replacing it, and print OK.
A VALUE of - reads the value from stdin, --value-file from a file, bytes
as they are (no newline is stripped): the way to store values too large
for one command-line argument (Linux caps one at 128 KiB).
With --prev-kv the previous value (if any) is printed on the next line.
With -o json prints the revision the put created (and prev_kv).
--lease ID attaches the key to a lease (kvdbctl lease grant), deleted with
it; --ttl 10s makes the key expire on its own (millisecond precision).
A value starting with a dash needs -- first: kvdbctl put k -- -1`,
		Example: `  kvdbctl put user:1 '{"name":"John"}'
  head -c 1048576 /dev/urandom | kvdbctl put big -
  kvdbctl put big --value-file ./blob.bin
  kvdbctl put session:42 token --ttl 30m
  kvdbctl put svc/api 10.0.0.7:80 --lease 694d77aa9e38260f`,
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("value-file") {
				return cobra.ExactArgs(1)(cmd, args)
			}
			return cobra.ExactArgs(2)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			value, err := a.putValue(args, valueFile, cmd.Flags().Changed("value-file"), cmd.ArgsLenAtDash())
			if err != nil {
				return err
			}
			var opts putOptions
			if cmd.Flags().Changed("lease") {
				if opts.lease, err = parseLeaseID(lease); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("ttl") {
				if ttl <= 0 {
					return fmt.Errorf("--ttl must be positive, got %s", ttl)
				}
				opts.ttl = ttl
			}
			return a.putWith(cmd.Context(), cmd.OutOrStdout(), args[0], value, prevKV, opts)
		},
	}
	cmd.Flags().StringVar(&lease, "lease", "", "attach the key to this lease (hexadecimal id from lease grant)")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "make the key expire after this long (e.g. 10s, 5m)")
	cmd.Flags().BoolVar(&prevKV, "prev-kv", false, "also print the value the key had before")
	cmd.Flags().StringVar(&valueFile, "value-file", "", "read the value from this file instead of the command line")
	return cmd
}

// putValue is the value put stores: the file of --value-file, stdin for
// "-", else the argument. "-" after "--" is the literal one-byte value.
func (a *app) putValue(args []string, valueFile string, fromFile bool, dashAt int) (string, error) {
	switch {
	case fromFile:
		b, err := os.ReadFile(valueFile)
		if err != nil {
			return "", fmt.Errorf("--value-file: %w", err)
		}
		return string(b), nil
	case args[1] == "-" && (dashAt < 0 || dashAt > 1):
		b, err := io.ReadAll(a.stdin)
		if err != nil {
			return "", fmt.Errorf("reading the value from stdin: %w", err)
		}
		return string(b), nil
	}
	return args[1], nil
}

// putJSON is the -o json answer of put.
type putJSON struct {
	Revision int64   `json:"revision"`
	PrevKV   *kvJSON `json:"prev_kv,omitempty"`
}

// putOptions are put's expiry: a lease or a TTL.
type putOptions struct {
	lease int64
	ttl   time.Duration
}

// put stores value under key; shared by the subcommand and the REPL.
func (a *app) put(ctx context.Context, w io.Writer, key, value string, prevKV bool) error {
	return a.putWith(ctx, w, key, value, prevKV, putOptions{})
}

// putWith is put with a lease or a TTL; those travel over gRPC whatever
// --protocol says.
func (a *app) putWith(ctx context.Context, w io.Writer, key, value string, prevKV bool, o putOptions) error {
	resp, err := invoke(ctx, a, func(ctx context.Context, c *client) (*kvdbv1.PutResponse, error) {
		req := &kvdbv1.PutRequest{Key: []byte(key), Value: []byte(value), PrevKv: prevKV, Lease: o.lease, TtlMs: o.ttl.Milliseconds()}
		if o.lease != 0 || o.ttl != 0 {
			return kvdbv1.NewKVServiceClient(c.conn).Put(ctx, req)
		}
		return c.kv.Put(ctx, req)
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
