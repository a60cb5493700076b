package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

func newDeleteCmd(a *app) *cobra.Command {
	var (
		prefix   bool
		from, to string
	)
	cmd := &cobra.Command{
		Use:     "delete KEY | delete --prefix PREFIX | delete --from A [--to B]",
		Aliases: []string{"del"},
		Short:   "Delete a key, a prefix or a range of keys",
		Long: `Delete KEY, every key starting with PREFIX (--prefix), or every key in
[A, B) (--from A --to B; without --to, every key from A to the end).
Prints the number of keys deleted (0 when nothing matched, which is not an
error). With -o json prints {"deleted":N,"revision":R}.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &kvdbv1.DeleteRequest{}
			switch {
			case cmd.Flags().Changed("from"):
				if len(args) > 0 || prefix {
					return &usageError{err: errors.New("--from cannot be combined with KEY or --prefix")}
				}
				if from == "" {
					return &usageError{err: errors.New("--from must not be empty")}
				}
				req.Key, req.RangeEnd = []byte(from), rangeEnd(to)
			case cmd.Flags().Changed("to"):
				return &usageError{err: errors.New("--to needs --from")}
			case len(args) == 1:
				req.Key, req.Prefix = []byte(args[0]), prefix
			default:
				return &usageError{err: errors.New("delete needs KEY, --prefix PREFIX or --from A")}
			}
			return a.deleteKeys(cmd.Context(), cmd.OutOrStdout(), req)
		},
	}
	cmd.Flags().BoolVar(&prefix, "prefix", false, "delete every key starting with KEY")
	cmd.Flags().StringVar(&from, "from", "", "first key of the range to delete (inclusive)")
	cmd.Flags().StringVar(&to, "to", "", "end of the range to delete (exclusive; empty: to the end)")
	return cmd
}

// rangeEnd maps --to to the proto's range_end: an empty --to means "to the
// end of the keyspace", which the API spells as the single byte 0x00 (an
// empty range_end would mean "just the start key").
func rangeEnd(to string) []byte {
	if to == "" {
		return []byte{0}
	}
	return []byte(to)
}

// deleteJSON is the -o json answer of delete.
type deleteJSON struct {
	Deleted  int64 `json:"deleted"`
	Revision int64 `json:"revision"`
}

// deleteKeys runs req and prints the count; shared with the REPL.
func (a *app) deleteKeys(ctx context.Context, w io.Writer, req *kvdbv1.DeleteRequest) error {
	resp, err := invoke(ctx, a, func(ctx context.Context, c *client) (*kvdbv1.DeleteResponse, error) {
		return c.kv.Delete(ctx, req)
	})
	if err != nil {
		return fmt.Errorf("delete %q: %w", req.GetKey(), err)
	}
	if a.output == outputJSON {
		return writeJSON(w, deleteJSON{Deleted: resp.GetDeleted(), Revision: resp.GetHeader().GetRevision()})
	}
	return writeText(w, "%d\n", resp.GetDeleted())
}
