package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

func newTxnCmd(a *app) *cobra.Command {
	var compares, success, failure []string
	cmd := &cobra.Command{
		Use:   "txn",
		Short: "Run a conditional transaction (compare, then success or failure ops)",
		Long: `Run a one-shot conditional transaction, in the spirit of etcdctl txn: if every
compare holds the success operations run, otherwise the failure operations,
atomically at one revision.

Without flags it reads stdin: compares one per line, a blank line, success
operations one per line, a blank line, failure operations.

  compare:    value("k") = "v" | version("k") > "0" | create("k") = "3" | mod("k") < "9"
              operators: = != > <; a value compare on a missing key never holds
  operation:  put KEY VALUE [--lease ID | --ttl DURATION] | get KEY | del KEY
              (quote words with spaces: "a b")

Prints SUCCESS or FAILURE, then each operation's answer; -o json prints
{"succeeded":..,"revision":..,"responses":[..]}.`,
		Example: `  kvdbctl txn --compare 'mod("lock") = "0"' --success 'put lock me' --failure 'get lock'
  kvdbctl txn --compare 'create("lock") = "0"' --success 'put lock me --lease 694d77aa9e38260f'
  printf 'value("k") = "1"\n\nput k 2\n\nget k\n' | kvdbctl txn`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var req *kvdbv1.ExecuteRequest
			var err error
			if len(compares)+len(success)+len(failure) > 0 {
				req, err = buildExecute(compares, success, failure)
			} else {
				req, err = readExecute(cmd.InOrStdin())
			}
			if err != nil {
				return &usageError{err: err}
			}
			return a.execute(cmd.Context(), cmd.OutOrStdout(), req)
		},
	}
	cmd.Flags().StringArrayVar(&compares, "compare", nil, `a compare, e.g. 'mod("k") = "0"' (repeatable)`)
	cmd.Flags().StringArrayVar(&success, "success", nil, `an operation run when every compare holds, e.g. 'put k v' (repeatable)`)
	cmd.Flags().StringArrayVar(&failure, "failure", nil, `an operation run otherwise, e.g. 'get k' (repeatable)`)
	return cmd
}

// readExecute parses the interactive stdin form: compares, blank line,
// success ops, blank line, failure ops.
func readExecute(in io.Reader) (*kvdbv1.ExecuteRequest, error) {
	var sections [3][]string
	part := 0
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			if part == len(sections)-1 {
				break
			}
			part++
			continue
		}
		sections[part] = append(sections[part], line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the transaction from stdin: %w", err)
	}
	return buildExecute(sections[0], sections[1], sections[2])
}

func buildExecute(compares, success, failure []string) (*kvdbv1.ExecuteRequest, error) {
	req := &kvdbv1.ExecuteRequest{}
	for i, c := range compares {
		cmp, err := parseCompare(c)
		if err != nil {
			return nil, fmt.Errorf("compare %d: %w", i+1, err)
		}
		req.Compares = append(req.Compares, cmp)
	}
	var err error
	if req.Success, err = parseExecuteOps("success", success); err != nil {
		return nil, err
	}
	if req.Failure, err = parseExecuteOps("failure", failure); err != nil {
		return nil, err
	}
	if len(req.Success)+len(req.Failure) == 0 {
		return nil, errors.New("the transaction has no operations")
	}
	return req, nil
}

var compareRE = regexp.MustCompile(`^(?i:(value|version|create|mod))\(\s*("(?:[^"\\]|\\.)*"|[^)\s]+)\s*\)\s*(=|==|!=|>|<)\s*(.*)$`)

var compareOperators = map[string]kvdbv1.CompareOperator{
	"=": kvdbv1.CompareOperator_COMPARE_OPERATOR_EQUAL, "==": kvdbv1.CompareOperator_COMPARE_OPERATOR_EQUAL,
	"!=": kvdbv1.CompareOperator_COMPARE_OPERATOR_NOT_EQUAL,
	">":  kvdbv1.CompareOperator_COMPARE_OPERATOR_GREATER, "<": kvdbv1.CompareOperator_COMPARE_OPERATOR_LESS,
}

// parseCompare parses `target("key") op "operand"`.
func parseCompare(s string) (*kvdbv1.Compare, error) {
	m := compareRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return nil, fmt.Errorf(`cannot parse %q: want e.g. mod("key") = "0" (targets value, version, create, mod; operators = != > <)`, s)
	}
	key, err := unquoteWord(m[2])
	if err != nil {
		return nil, err
	}
	operand, err := unquoteWord(strings.TrimSpace(m[4]))
	if err != nil {
		return nil, err
	}
	cmp := &kvdbv1.Compare{Key: []byte(key), Operator: compareOperators[m[3]]}
	target := strings.ToLower(m[1])
	if target == "value" {
		cmp.Operand = &kvdbv1.Compare_Value{Value: []byte(operand)}
		return cmp, nil
	}
	n, err := strconv.ParseInt(operand, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%s compare needs an integer, not %q", target, operand)
	}
	switch target {
	case "version":
		cmp.Operand = &kvdbv1.Compare_Version{Version: n}
	case "create":
		cmp.Operand = &kvdbv1.Compare_CreateRevision{CreateRevision: n}
	default:
		cmp.Operand = &kvdbv1.Compare_ModRevision{ModRevision: n}
	}
	return cmp, nil
}

func parseExecuteOps(branch string, lines []string) ([]*kvdbv1.ExecuteOp, error) {
	var ops []*kvdbv1.ExecuteOp
	for i, line := range lines {
		words, err := splitWords(line)
		if err != nil {
			return nil, fmt.Errorf("%s op %d: %w", branch, i+1, err)
		}
		bad := fmt.Errorf("%s op %d: cannot parse %q: want put KEY VALUE [--lease ID | --ttl DURATION], get KEY or del KEY", branch, i+1, line)
		if len(words) == 0 {
			return nil, bad
		}
		switch strings.ToLower(words[0]) {
		case "put":
			if len(words) < 3 {
				return nil, bad
			}
			p := &kvdbv1.PutRequest{Key: []byte(words[1]), Value: []byte(words[2])}
			if err := putFlags(p, words[3:]); err != nil {
				return nil, fmt.Errorf("%s op %d: %w", branch, i+1, err)
			}
			ops = append(ops, &kvdbv1.ExecuteOp{Op: &kvdbv1.ExecuteOp_Put{Put: p}})
		case "get":
			if len(words) != 2 {
				return nil, bad
			}
			ops = append(ops, &kvdbv1.ExecuteOp{Op: &kvdbv1.ExecuteOp_Range{Range: &kvdbv1.RangeRequest{Key: []byte(words[1])}}})
		case "del", "delete":
			if len(words) != 2 {
				return nil, bad
			}
			ops = append(ops, &kvdbv1.ExecuteOp{Op: &kvdbv1.ExecuteOp_Delete{Delete: &kvdbv1.DeleteRequest{Key: []byte(words[1])}}})
		default:
			return nil, bad
		}
	}
	return ops, nil
}

// putFlags reads a transaction put's options, as kvdbctl put takes them:
// --lease ID (hexadecimal) and --ttl DURATION, each as one word (--ttl=10s)
// or two.
func putFlags(p *kvdbv1.PutRequest, words []string) error {
	for len(words) > 0 {
		name, val, inline := strings.Cut(words[0], "=")
		if !inline {
			if len(words) < 2 || (name != "--lease" && name != "--ttl") {
				return fmt.Errorf("unknown put option %q: want --lease ID or --ttl DURATION", words[0])
			}
			val, words = words[1], words[2:]
		} else {
			words = words[1:]
		}
		switch name {
		case "--lease":
			id, err := parseLeaseID(val)
			if err != nil {
				return err
			}
			p.Lease = id
		case "--ttl":
			d, err := time.ParseDuration(val)
			if err != nil || d <= 0 {
				return fmt.Errorf("--ttl must be a positive duration such as 10s, got %q", val)
			}
			p.TtlMs = d.Milliseconds()
		default:
			return fmt.Errorf("unknown put option %q: want --lease ID or --ttl DURATION", name)
		}
	}
	return nil
}

// splitWords splits on blanks, keeping "double quoted" words (Go escapes
// allowed) together.
func splitWords(s string) ([]string, error) {
	var words []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if s[0] == '"' {
			end := 1
			for end < len(s) && s[end] != '"' {
				if s[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(s) {
				return nil, fmt.Errorf("unterminated quote in %q", s)
			}
			w, err := strconv.Unquote(s[:end+1])
			if err != nil {
				return nil, fmt.Errorf("bad quoted word %s: %w", s[:end+1], err)
			}
			words, s = append(words, w), s[end+1:]
			continue
		}
		w, rest := nextToken(s)
		words, s = append(words, w), rest
	}
	return words, nil
}

func unquoteWord(s string) (string, error) {
	if strings.HasPrefix(s, `"`) {
		w, err := strconv.Unquote(s)
		if err != nil {
			return "", fmt.Errorf("bad quoted word %s: %w", s, err)
		}
		return w, nil
	}
	return s, nil
}

// executeJSON is the -o json answer of txn.
type executeJSON struct {
	Succeeded bool  `json:"succeeded"`
	Revision  int64 `json:"revision"`
	Responses []any `json:"responses"`
}

func (a *app) execute(ctx context.Context, w io.Writer, req *kvdbv1.ExecuteRequest) error {
	resp, err := invoke(ctx, a, func(ctx context.Context, c *client) (*kvdbv1.ExecuteResponse, error) {
		return c.txn.Execute(ctx, req)
	})
	if err != nil {
		return fmt.Errorf("txn: %w", err)
	}
	if a.output == outputJSON {
		out := executeJSON{Succeeded: resp.GetSucceeded(), Revision: resp.GetHeader().GetRevision(), Responses: []any{}}
		for _, r := range resp.GetResponses() {
			switch {
			case r.GetRange() != nil:
				kvs := []kvJSON{}
				for _, kv := range r.GetRange().GetKvs() {
					kvs = append(kvs, toKVJSON(kv))
				}
				out.Responses = append(out.Responses, map[string]any{"kvs": kvs})
			case r.GetPut() != nil:
				out.Responses = append(out.Responses, map[string]any{"put": "OK"})
			default:
				out.Responses = append(out.Responses, map[string]any{"deleted": r.GetDelete().GetDeleted()})
			}
		}
		return writeJSON(w, out)
	}
	verdict := "FAILURE"
	if resp.GetSucceeded() {
		verdict = "SUCCESS"
	}
	if err := writeText(w, "%s\n", verdict); err != nil {
		return err
	}
	for _, r := range resp.GetResponses() {
		var err error
		switch {
		case r.GetRange() != nil:
			for _, kv := range r.GetRange().GetKvs() {
				if err = writeLine(w, kv.GetKey()); err == nil {
					err = writeLine(w, kv.GetValue())
				}
			}
		case r.GetPut() != nil:
			err = writeText(w, "OK\n")
		default:
			err = writeText(w, "%d\n", r.GetDelete().GetDeleted())
		}
		if err != nil {
			return err
		}
	}
	return nil
}
