package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	kvclient "github.com/kvdb/kvdb/client"
)

// watchArgs is one watch: what the command line or the shell asked for.
type watchArgs struct {
	key, end  string
	prefix    bool
	rev       int64
	prevKV    bool
	maxEvents int
}

func newWatchCmd(a *app) *cobra.Command {
	var wa watchArgs
	cmd := &cobra.Command{
		Use:   "watch KEY [RANGE_END]",
		Short: "Print every change of a key, prefix or range as it happens",
		Long: `Print every change of KEY (with RANGE_END: of [KEY, RANGE_END); with
--prefix: of every key starting with KEY) until interrupted (Ctrl-C) or
--max-events changes have been printed. One line per change: "PUT key value"
or "DELETE key"; with --prev-kv a PUT that replaced a value is followed by
the old value on a line of its own. With -o json, one JSON object per change:
{"type":"PUT","kv":{...},"prev_kv":{...}}.
--rev N starts at revision N (a revision already past is replayed from the
server's history; one older than the history ends with an error naming the
oldest revision held). With --endpoints the watch moves to the next node when
its node fails, and goes on from the revision after the last one printed.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			wa.key = args[0]
			if len(args) == 2 {
				if wa.prefix {
					return &usageError{err: errors.New("--prefix cannot be combined with RANGE_END")}
				}
				wa.end = args[1]
			}
			if wa.rev < 0 || wa.maxEvents < 0 {
				return &usageError{err: errors.New("--rev and --max-events must not be negative")}
			}
			return a.watch(cmd.Context(), cmd.OutOrStdout(), wa)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&wa.prefix, "prefix", false, "watch every key starting with KEY")
	f.Int64Var(&wa.rev, "rev", 0, "first revision to print (0: changes from now on)")
	f.BoolVar(&wa.prevKV, "prev-kv", false, "print each key's previous value too")
	f.IntVar(&wa.maxEvents, "max-events", 0, "exit after printing this many changes (0: run until interrupted)")
	return cmd
}

// watchEventJSON is one change as -o json prints it.
type watchEventJSON struct {
	Type   string  `json:"type"`
	KV     kvJSON  `json:"kv"`
	PrevKV *kvJSON `json:"prev_kv,omitempty"`
}

func kvToJSON(kv kvclient.KeyValue) kvJSON {
	var out kvJSON
	out.Key, out.KeyEncoding = jsonBytes(kv.Key)
	out.Value, out.ValueEncoding = jsonBytes(kv.Value)
	out.CreateRevision, out.ModRevision, out.Version = kv.CreateRevision, kv.ModRevision, kv.Version
	return out
}

// watch prints the changes wa names until ctx ends, an interrupt arrives
// or wa.maxEvents have been printed. Watches use gRPC on the node's port
// whatever --protocol says.
func (a *app) watch(ctx context.Context, w io.Writer, wa watchArgs) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	c, err := kvclient.New(ctx, kvclient.Options{Endpoints: a.endpointList(), PoolSize: 1, TLS: a.tls,
		Username: a.user, Password: a.password, DialTimeout: a.timeout})
	if err != nil {
		return err
	}
	defer c.Close()
	var opts []kvclient.WatchOption
	switch {
	case wa.prefix:
		opts = append(opts, kvclient.WithPrefix())
	case wa.end != "":
		opts = append(opts, kvclient.WithRange(rangeEnd(wa.end)))
	}
	if wa.rev > 0 {
		opts = append(opts, kvclient.WithRev(wa.rev))
	}
	if wa.prevKV {
		opts = append(opts, kvclient.WithPrevKV())
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	printed := 0
	for r := range c.Watch(ctx, []byte(wa.key), opts...) {
		if r.Err != nil {
			if errors.Is(r.Err, kvclient.ErrCompacted) {
				return fmt.Errorf("%w (the oldest revision held is %d: read the keys, then watch from that read's revision + 1)", r.Err, r.CompactRevision)
			}
			return r.Err
		}
		for _, ev := range r.Events {
			if err := a.printEvent(w, ev, wa.prevKV); err != nil {
				return err
			}
			printed++
			if wa.maxEvents > 0 && printed >= wa.maxEvents {
				return nil
			}
		}
	}
	return nil
}

func (a *app) printEvent(w io.Writer, ev kvclient.Event, prevKV bool) error {
	if a.output == outputJSON {
		out := watchEventJSON{Type: ev.Type.String(), KV: kvToJSON(ev.KV)}
		if prevKV && ev.PrevKV != nil {
			p := kvToJSON(*ev.PrevKV)
			out.PrevKV = &p
		}
		return writeJSONLine(w, out)
	}
	var b []byte
	if ev.Type == kvclient.EventDelete {
		b = append(append([]byte("DELETE "), ev.KV.Key...), '\n')
	} else {
		b = append(append(append(append([]byte("PUT "), ev.KV.Key...), ' '), ev.KV.Value...), '\n')
	}
	if prevKV && ev.PrevKV != nil {
		b = append(append(b, ev.PrevKV.Value...), '\n')
	}
	_, err := w.Write(b)
	return err
}

// execWatch handles the shell's
// "WATCH key [range_end] [PREFIX] [REV n] [PREVKV] [COUNT n]".
func (a *app) execWatch(ctx context.Context, w io.Writer, args string) error {
	usage := errors.New("usage: WATCH key [range_end] [PREFIX] [REV n] [PREVKV] [COUNT n]")
	f := strings.Fields(args)
	if len(f) == 0 {
		return usage
	}
	wa := watchArgs{key: f[0]}
	for i := 1; i < len(f); i++ {
		switch strings.ToUpper(f[i]) {
		case "PREFIX":
			wa.prefix = true
		case "PREVKV":
			wa.prevKV = true
		case "REV", "COUNT":
			if i+1 >= len(f) {
				return usage
			}
			n, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil || n < 0 {
				return fmt.Errorf("invalid %s %q: want a non-negative integer", strings.ToUpper(f[i]), f[i+1])
			}
			if strings.ToUpper(f[i]) == "REV" {
				wa.rev = n
			} else {
				wa.maxEvents = int(n)
			}
			i++
		default:
			if i != 1 || wa.end != "" {
				return usage
			}
			wa.end = f[i]
		}
	}
	if wa.prefix && wa.end != "" {
		return errors.New("WATCH: PREFIX cannot be combined with range_end")
	}
	return a.watch(ctx, w, wa)
}

// writeJSONLine prints v as one line of JSON (a stream of objects a
// program reads line by line).
func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("writing json: %w", err)
	}
	return nil
}
