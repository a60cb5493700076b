package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

func newBatchCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "batch OP...",
		Short: "Apply puts and deletes atomically",
		Long: `Apply a list of writes atomically, all at one revision or none at all.
Each OP is "put KEY VALUE" or "delete KEY" (case-insensitive, "del" works):

  kvdbctl batch put k1 v1 put k2 v2 delete k3

Prints "OK (N puts, M deleted)"; with -o json {"puts":N,"deleted":M,"revision":R}.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ops, err := parseBatchOps(args)
			if err != nil {
				return &usageError{err: err}
			}
			return a.batch(cmd.Context(), cmd.OutOrStdout(), ops)
		},
	}
}

// parseBatchOps turns "put k v delete k ..." tokens into batch operations.
// It is shared by the subcommand and the REPL's BATCH so both accept the
// same language.
func parseBatchOps(tokens []string) ([]*kvdbv1.BatchOp, error) {
	if len(tokens) == 0 {
		return nil, fmt.Errorf("empty batch: want put KEY VALUE or delete KEY")
	}
	var ops []*kvdbv1.BatchOp
	for i := 0; i < len(tokens); {
		switch op := strings.ToLower(tokens[i]); op {
		case "put":
			if i+2 >= len(tokens) {
				return nil, fmt.Errorf("batch op %d: put needs KEY and VALUE", len(ops)+1)
			}
			ops = append(ops, &kvdbv1.BatchOp{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{
				Key: []byte(tokens[i+1]), Value: []byte(tokens[i+2]),
			}}})
			i += 3
		case "delete", "del":
			if i+1 >= len(tokens) {
				return nil, fmt.Errorf("batch op %d: delete needs KEY", len(ops)+1)
			}
			ops = append(ops, &kvdbv1.BatchOp{Op: &kvdbv1.BatchOp_Delete{Delete: &kvdbv1.BatchDelete{
				Key: []byte(tokens[i+1]),
			}}})
			i += 2
		default:
			return nil, fmt.Errorf("batch op %d: unknown operation %q (want put or delete)", len(ops)+1, tokens[i])
		}
	}
	return ops, nil
}

// batchJSON is the -o json answer of batch.
type batchJSON struct {
	Puts     int64 `json:"puts"`
	Deleted  int64 `json:"deleted"`
	Revision int64 `json:"revision"`
}

// batch applies ops and prints the summary; shared with the REPL.
func (a *app) batch(ctx context.Context, w io.Writer, ops []*kvdbv1.BatchOp) error {
	resp, err := invoke(ctx, a, func(ctx context.Context, c *client) (*kvdbv1.BatchResponse, error) {
		return c.kv.Batch(ctx, &kvdbv1.BatchRequest{Ops: ops})
	})
	if err != nil {
		return fmt.Errorf("batch of %d ops: %w", len(ops), err)
	}
	if a.output == outputJSON {
		return writeJSON(w, batchJSON{Puts: resp.GetPuts(), Deleted: resp.GetDeleted(), Revision: resp.GetHeader().GetRevision()})
	}
	return writeText(w, "OK (%d puts, %d deleted)\n", resp.GetPuts(), resp.GetDeleted())
}
