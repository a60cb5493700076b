package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/spf13/cobra"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/engine"
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
// looks at the response to say "(empty)". A server answers at most
// -max-response-bytes at a time (more=true before the limit was reached):
// rangeKeys then asks again from after the last key, printing as it goes,
// until the range or the limit is exhausted. The response it returns holds
// the count of the first answer, the keys printed (for JSON) and whether
// keys were left out.
func (a *app) rangeKeys(ctx context.Context, w io.Writer, req *kvdbv1.RangeRequest) (*kvdbv1.RangeResponse, error) {
	req.Consistency = a.consistency
	if req.GetPrefix() {
		req.RangeEnd, req.Prefix = engine.PrefixEnd(req.GetKey()), false
	}
	limit := req.GetLimit()
	total := &kvdbv1.RangeResponse{}
	jsonOut := rangeJSON{KVs: []kvJSON{}}
	var got int64
	for page := 0; ; page++ {
		if limit > 0 {
			req.Limit = limit - got
		}
		resp, err := invoke(ctx, a, func(ctx context.Context, c *client) (*kvdbv1.RangeResponse, error) {
			return c.kv.Range(ctx, req)
		})
		if err != nil {
			return nil, fmt.Errorf("range %q: %w", req.GetKey(), err)
		}
		if page == 0 {
			total.Header, total.Count = resp.GetHeader(), resp.GetCount()
		}
		total.More = resp.GetMore()
		if req.GetCountOnly() {
			break
		}
		kvs := resp.GetKvs()
		got += int64(len(kvs))
		if a.output == outputJSON {
			for _, kv := range kvs {
				jsonOut.KVs = append(jsonOut.KVs, toKVJSON(kv))
			}
			total.Kvs = append(total.Kvs, kvs...)
		} else {
			total.Kvs = append(total.Kvs, kvs...)
			if err := a.printKVs(w, kvs, req.GetKeysOnly()); err != nil {
				return total, err
			}
			total.Kvs = total.Kvs[:0:0] // printed: keep only the count below
		}
		// Done when the server says so, when the limit is reached, or
		// when the server hit its own key limit (the answer is full).
		if !resp.GetMore() || len(kvs) == 0 || (limit > 0 && got >= limit) || (limit == 0 && !a.pageServerLimit(resp)) {
			break
		}
		req.Key = append(append([]byte(nil), kvs[len(kvs)-1].GetKey()...), 0)
	}
	total.Count = max(total.Count, got)
	if a.output == outputJSON {
		jsonOut.More, jsonOut.Count = total.More, total.Count
		return total, writeJSON(w, jsonOut)
	}
	if req.GetCountOnly() {
		return total, writeText(w, "%d\n", total.Count)
	}
	if total.More {
		// What was printed, for moreKeys: the count minus the keys shown.
		total.Kvs = make([]*kvdbv1.KeyValue, got)
	}
	return total, nil
}

// pageServerLimit says whether an answer without --limit stopped at the
// response byte budget (page on) rather than at the server's key limit
// (stop, and say how many more there are).
func (a *app) pageServerLimit(resp *kvdbv1.RangeResponse) bool {
	return int64(len(resp.GetKvs())) < a.serverRangeLimit()
}

// serverRangeLimit is the server's -max-range-limit as far as kvdbctl
// knows it: the documented default.
func (a *app) serverRangeLimit() int64 { return 10_000 }

// printKVs prints keys (and values) one line each.
func (a *app) printKVs(w io.Writer, kvs []*kvdbv1.KeyValue, keysOnly bool) error {
	for _, kv := range kvs {
		if err := writeLine(w, kv.GetKey()); err != nil {
			return err
		}
		if keysOnly {
			continue
		}
		if err := writeLine(w, a.displayValue(kv.GetValue())); err != nil {
			return err
		}
	}
	return nil
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
