package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// helpText is printed by HELP. The exit-status rule is spelled out here
// because it is the one thing a script author must know.
const helpText = `Commands (case-insensitive):
  GET key                       print the value, or (nil) when the key is missing
  PUT key value                 store value; the value is the rest of the line, spaces included
  DELETE key                    delete a key; prints the number of keys deleted
  TTL key                       seconds the key has left: -1 no TTL, -2 no such key
  RANGE [prefix [limit]]        list keys starting with prefix (all keys without one);
                                on a terminal values over 256 bytes are cut short
  BATCH PUT k v ... DELETE k    atomic batch; values are single words here
  WATCH key [end] [PREFIX] [REV n] [PREVKV] [COUNT n]
                                print changes (PUT key value / DELETE key) as they
                                happen, until COUNT changes or Ctrl-C
  BEGIN [txid]                  start a transaction: GET/PUT/DELETE/RANGE then go to it
                                (prompt kvdb(txid)> ); writes show QUEUED until COMMIT
  COMMIT                        apply the transaction atomically; ABORTED means a key it
                                read was changed by someone else: nothing applied, retry
  ROLLBACK                      discard the transaction
  BENCHMARK ops [prefix [size]] [CLEANUP]
                                ops puts of size-byte values (default bench_key_, 256),
                                then ops gets of them: throughput, latency, errors; the
                                keys stay in the store unless CLEANUP is given
  STATS                         server statistics as JSON
  STATUS                        node raft status
  HELP                          this text
  QUIT | EXIT                   leave the shell
A failed command prints "(error) <message>" and the shell carries on. When
commands come from a pipe or file instead of a terminal, kvdbctl exits with
status 1 at the end if any of them failed, so scripts can tell.
`

// execLine runs one shell command, writing its answer to w. quit reports
// QUIT/EXIT. A non-nil error means the command failed; the caller prints it
// as "(error) ..." so the interactive and scripted shells agree.
func (a *app) execLine(ctx context.Context, w io.Writer, line string) (quit bool, err error) {
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	name, rest := nextToken(line)
	if name == "" {
		return false, nil
	}
	switch strings.ToUpper(name) {
	case "GET":
		key, extra := nextToken(rest)
		if key == "" || strings.TrimSpace(extra) != "" {
			return false, errors.New("usage: GET key")
		}
		if a.txnID != "" {
			return false, a.txnGet(ctx, w, key)
		}
		err := a.get(ctx, w, key)
		if errors.Is(err, errKeyNotFound) {
			// Redis-style nil: a missing key is an answer, not a failure.
			return false, writeText(w, "(nil)\n")
		}
		return false, err
	case "PUT", "SET":
		key, value := nextToken(rest)
		// The value is everything after the key, kept verbatim, so JSON
		// documents with spaces need no quoting (the README's own example).
		value = strings.TrimLeft(value, " \t")
		if key == "" || value == "" {
			return false, errors.New("usage: PUT key value")
		}
		if a.txnID != "" {
			return false, a.txnPut(ctx, w, key, value)
		}
		return false, a.put(ctx, w, key, value, false)
	case "DELETE", "DEL":
		key, extra := nextToken(rest)
		if key == "" || strings.TrimSpace(extra) != "" {
			return false, errors.New("usage: DELETE key")
		}
		if a.txnID != "" {
			return false, a.txnDelete(ctx, w, key)
		}
		return false, a.deleteKeys(ctx, w, &kvdbv1.DeleteRequest{Key: []byte(key)})
	case "RANGE", "SCAN":
		return false, a.execRange(ctx, w, rest)
	case "TTL":
		key, extra := nextToken(rest)
		if key == "" || strings.TrimSpace(extra) != "" {
			return false, errors.New("usage: TTL key")
		}
		return false, a.ttl(ctx, w, key)
	case "WATCH":
		if a.txnID != "" {
			return false, fmt.Errorf("WATCH is not allowed inside transaction %s", a.txnID)
		}
		return false, a.execWatch(ctx, w, rest)
	case "BATCH":
		if a.txnID != "" {
			return false, fmt.Errorf("BATCH is not allowed inside transaction %s: use PUT/DELETE, then COMMIT", a.txnID)
		}
		ops, err := parseBatchOps(strings.Fields(rest))
		if err != nil {
			return false, fmt.Errorf("%w; usage: BATCH PUT k1 v1 PUT k2 v2 DELETE k3", err)
		}
		return false, a.batch(ctx, w, ops)
	case "STATS":
		if strings.TrimSpace(rest) != "" {
			return false, errors.New("usage: STATS")
		}
		return false, a.stats(ctx, w)
	case "STATUS":
		if strings.TrimSpace(rest) != "" {
			return false, errors.New("usage: STATUS")
		}
		return false, a.status(ctx, w)
	case "BENCHMARK":
		if a.txnID != "" {
			return false, fmt.Errorf("BENCHMARK is not allowed inside transaction %s", a.txnID)
		}
		return false, a.execBenchmark(ctx, w, rest)
	case "HELP", "?":
		return false, writeText(w, "%s", helpText)
	case "QUIT", "EXIT":
		if a.txnID != "" {
			// Leaving discards the open transaction rather than letting it
			// sit until it expires.
			_ = a.txnEnd(ctx, io.Discard, "ROLLBACK", "")
		}
		return true, nil
	case "BEGIN":
		return false, a.txnBegin(ctx, w, rest)
	case "COMMIT", "ROLLBACK":
		return false, a.txnEnd(ctx, w, strings.ToUpper(name), rest)
	default:
		return false, fmt.Errorf("unknown command %q (type HELP)", name)
	}
}

// execRange handles "RANGE [prefix [limit]]".
func (a *app) execRange(ctx context.Context, w io.Writer, args string) error {
	fields := strings.Fields(args)
	if len(fields) > 2 {
		return errors.New("usage: RANGE [prefix [limit]]")
	}
	req := &kvdbv1.RangeRequest{}
	if len(fields) == 0 {
		setWholeKeyspace(req)
	} else {
		req.Key, req.Prefix = []byte(fields[0]), true
	}
	if len(fields) == 2 {
		limit, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil || limit < 0 {
			return fmt.Errorf("invalid limit %q: want a non-negative integer", fields[1])
		}
		req.Limit = limit
	}
	if a.txnID != "" {
		return a.txnRange(ctx, w, req)
	}
	resp, err := a.rangeKeys(ctx, w, req)
	if err != nil {
		return err
	}
	if a.output == outputText && resp.GetCount() == 0 {
		// In the shell silence would look like a hang; say it was empty.
		return writeText(w, "(empty)\n")
	}
	if a.output == outputText && resp.GetMore() {
		return writeText(w, "%s (RANGE prefix limit)\n", moreKeys(resp))
	}
	return nil
}

// nextToken splits off the first whitespace-separated word of s. rest starts
// right after the word, leading whitespace included, so callers that need
// the remainder verbatim (PUT's value) get it untouched.
func nextToken(s string) (token, rest string) {
	s = strings.TrimLeft(s, " \t")
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i], s[i:]
	}
	return s, ""
}
