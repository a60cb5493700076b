package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/spf13/cobra"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

func newRangeCmd(a *app) *cobra.Command {
	var (
		from, to  string
		limit     int64
		keysOnly  bool
		countOnly bool
	)
	cmd := &cobra.Command{
		Use:   "range [PREFIX] | range --from A [--to B]",
		Short: "List keys by prefix or range, in byte order",
		Long: `List every key starting with PREFIX, or every key in [A, B) with
--from A --to B (without --to: from A to the end). With neither, every key.
Text output is the key then the value, one line each, per pair (values are
printed as stored); --keys-only drops the values, --count-only prints just
the number of keys. On a terminal a value over 256 bytes is cut short and
followed by its size (--full-values prints it whole; output to a pipe or
file is never cut). When --limit (or the server's -max-range-limit) left
keys out, a line on stderr says how many more there are.
With -o json prints {"kvs":[...],"more":..,"count":..}.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &kvdbv1.RangeRequest{Limit: limit, KeysOnly: keysOnly, CountOnly: countOnly}
			switch {
			case cmd.Flags().Changed("from"):
				if len(args) > 0 {
					return &usageError{err: errors.New("--from cannot be combined with PREFIX")}
				}
				if from == "" {
					return &usageError{err: errors.New("--from must not be empty")}
				}
				req.Key, req.RangeEnd = []byte(from), rangeEnd(to)
			case cmd.Flags().Changed("to"):
				return &usageError{err: errors.New("--to needs --from")}
			case len(args) == 1:
				req.Key, req.Prefix = []byte(args[0]), true
			default:
				setWholeKeyspace(req)
			}
			if limit < 0 {
				return &usageError{err: errors.New("--limit must not be negative")}
			}
			resp, err := a.rangeKeys(cmd.Context(), cmd.OutOrStdout(), req)
			if err == nil && a.output == outputText && resp.GetMore() {
				// stderr, so that stdout stays the keys and values.
				err = writeText(a.stderr, "%s (raise --limit to see them)\n", moreKeys(resp))
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "first key of the range (inclusive)")
	f.StringVar(&to, "to", "", "end of the range (exclusive; empty: to the end)")
	f.Int64Var(&limit, "limit", 0, "return at most this many keys (0: the server's limit)")
	f.BoolVar(&keysOnly, "keys-only", false, "print keys without values")
	f.BoolVar(&countOnly, "count-only", false, "print only the number of keys")
	return cmd
}

// setWholeKeyspace makes req cover every key: from the smallest possible
// non-empty key to the end. Keys must not be empty, so an empty prefix
// cannot be used for this.
func setWholeKeyspace(req *kvdbv1.RangeRequest) {
	req.Key, req.RangeEnd, req.Prefix = []byte{0}, []byte{0}, false
}

// rangeJSON is the -o json answer of range.
type rangeJSON struct {
	KVs   []kvJSON `json:"kvs"`
	More  bool     `json:"more"`
	Count int64    `json:"count"`
}

// rangeKeys runs req and prints the result; shared with the REPL, which also
// looks at the response to say "(empty)".
func (a *app) rangeKeys(ctx context.Context, w io.Writer, req *kvdbv1.RangeRequest) (*kvdbv1.RangeResponse, error) {
	req.Consistency = a.consistency
	resp, err := invoke(ctx, a, func(ctx context.Context, c *client) (*kvdbv1.RangeResponse, error) {
		return c.kv.Range(ctx, req)
	})
	if err != nil {
		return nil, fmt.Errorf("range %q: %w", req.GetKey(), err)
	}
	if a.output == outputJSON {
		// A non-nil slice so an empty result prints [] rather than null.
		out := rangeJSON{KVs: make([]kvJSON, 0, len(resp.GetKvs())), More: resp.GetMore(), Count: resp.GetCount()}
		for _, kv := range resp.GetKvs() {
			out.KVs = append(out.KVs, toKVJSON(kv))
		}
		return resp, writeJSON(w, out)
	}
	if req.GetCountOnly() {
		return resp, writeText(w, "%d\n", resp.GetCount())
	}
	for _, kv := range resp.GetKvs() {
		if err := writeLine(w, kv.GetKey()); err != nil {
			return resp, err
		}
		if req.GetKeysOnly() {
			continue
		}
		if err := writeLine(w, a.displayValue(kv.GetValue())); err != nil {
			return resp, err
		}
	}
	return resp, nil
}

// maxTerminalValue is the longest value range prints whole on a terminal.
const maxTerminalValue = 256

// displayValue is value as range prints it: whole, unless it goes to a
// terminal, is over maxTerminalValue bytes and --full-values is not set.
func (a *app) displayValue(value []byte) []byte {
	if len(value) <= maxTerminalValue || a.fullValues || !a.stdoutTerminal() {
		return value
	}
	cut := maxTerminalValue
	for cut > maxTerminalValue-utf8.UTFMax && !utf8.RuneStart(value[cut]) {
		cut-- // do not split a UTF-8 sequence
	}
	out := append([]byte(nil), value[:cut]...)
	return fmt.Appendf(out, "… [%d bytes; --full-values prints them all]", len(value))
}

// moreKeys says how many keys a limited range left out.
func moreKeys(resp *kvdbv1.RangeResponse) string {
	if n := resp.GetCount() - int64(len(resp.GetKvs())); n > 0 {
		if n == 1 {
			return "… 1 more key"
		}
		return fmt.Sprintf("… %d more keys", n)
	}
	return "… more keys"
}
