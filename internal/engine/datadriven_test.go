package engine

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestDataDriven runs the scripts in testdata/. Regenerate expectations with
// `go test ./internal/engine/ -run TestDataDriven -rewrite`.
//
// Commands (byte strings accept a 0x-prefixed hex form, e.g. end=0x00):
//
//	put k=<key> v=<value> [prev]          apply one op at the next index
//	delete k=<key> [prev]
//	delete-range k=<key> end=<end> [prev]
//	batch [index=<n>]                     one Apply; ops on following lines
//	get k=<key>
//	range start=<key> [end=<end>|prefix] [limit=<n>] [keys-only] [count-only]
//	mark-applied index=<n>
//	stats                                 revision, applied index, len, memory
//	dump                                  every key with revisions
//	snapshot-roundtrip                    WriteTo+Restore into a new store, compare
//	observe                               record the changes each apply reports
//	events                                print (and forget) the recorded changes
//	evict                                 one ApplyEvict; input lines k=<key> mod=<rev>
//	txn [index=<n>]                       one ApplyTxn; input lines:
//	    read k=<key> mod=<rev>             a point-read check
//	    range k=<key> end=<end> count=<n> max=<rev>   a range-read check
//	    cmp k=<key> target=value|version|create|mod op=eq|ne|gt|lt [v=<value>] [n=<number>]
//	    success | failure                  following ops go to that branch
//	    put/delete/delete-range ...        as in batch; get k=<key> [end=<end>] reads
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		s := New()
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			return runCmd(t, s, d)
		})
	})
}

func ddBytes(s string) []byte {
	if strings.HasPrefix(s, "0x") {
		b, err := hex.DecodeString(s[2:])
		if err == nil {
			return b
		}
	}
	return []byte(s)
}

func fmtBytes(b []byte) string {
	for _, c := range b {
		if c < 0x21 || c > 0x7e || c == '=' {
			return "0x" + hex.EncodeToString(b)
		}
	}
	return string(b)
}

func fmtKV(kv KeyValue, keysOnly bool) string {
	if keysOnly {
		return fmt.Sprintf("%s create=%d mod=%d ver=%d", fmtBytes(kv.Key), kv.CreateRevision, kv.ModRevision, kv.Version)
	}
	return fmt.Sprintf("%s=%s create=%d mod=%d ver=%d", fmtBytes(kv.Key), fmtBytes(kv.Value), kv.CreateRevision, kv.ModRevision, kv.Version)
}

// parseArgs parses "cmd k=v flag" lines used inside batch input.
func parseArgs(line string) (string, map[string]string) {
	f := strings.Fields(line)
	args := map[string]string{}
	if len(f) == 0 {
		return "", args
	}
	for _, a := range f[1:] {
		k, v, _ := strings.Cut(a, "=")
		args[k] = v
	}
	return f[0], args
}

func buildOp(t *testing.T, cmd string, args map[string]string) Op {
	_, prev := args["prev"]
	switch cmd {
	case "put":
		return Op{Type: OpPut, Key: ddBytes(args["k"]), Value: ddBytes(args["v"]), PrevKV: prev}
	case "delete":
		return Op{Type: OpDelete, Key: ddBytes(args["k"]), PrevKV: prev}
	case "delete-range":
		return Op{Type: OpDeleteRange, Key: ddBytes(args["k"]), End: ddBytes(args["end"]), PrevKV: prev}
	case "get":
		var end []byte
		if v, ok := args["end"]; ok {
			end = ddBytes(v)
		}
		return Op{Type: OpRange, Key: ddBytes(args["k"]), End: end}
	}
	t.Fatalf("unknown op %q", cmd)
	return Op{}
}

func ddArgs(d *datadriven.TestData) map[string]string {
	args := map[string]string{}
	for _, a := range d.CmdArgs {
		args[a.Key] = strings.Join(a.Vals, ",")
	}
	return args
}

func fmtResult(res Result, ok bool, ops []Op) string {
	var b strings.Builder
	if !ok {
		fmt.Fprintf(&b, "ignored rev=%d\n", res.Revision)
		return b.String()
	}
	fmt.Fprintf(&b, "rev=%d\n", res.Revision)
	for i, r := range res.Ops {
		if err := ValidateOp(ops[i]); err != nil {
			fmt.Fprintf(&b, "  op %d: invalid: %v\n", i, err)
			continue
		}
		if r.Deleted > 0 {
			fmt.Fprintf(&b, "  op %d: deleted=%d\n", i, r.Deleted)
		}
		for _, kv := range r.Prev {
			fmt.Fprintf(&b, "  op %d: prev %s\n", i, fmtKV(kv, false))
		}
	}
	return b.String()
}

func runCmd(t *testing.T, s *Store, d *datadriven.TestData) string {
	args := ddArgs(d)
	next := func() uint64 {
		if v, ok := args["index"]; ok {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				d.Fatalf(t, "bad index: %v", err)
			}
			return n
		}
		return s.AppliedIndex() + 1
	}
	check := func(out string) string {
		if msg := s.checkConsistency(); msg != "" {
			d.Fatalf(t, "store inconsistent: %s", msg)
		}
		return out
	}
	switch d.Cmd {
	case "put", "delete", "delete-range":
		ops := []Op{buildOp(t, d.Cmd, args)}
		res, ok := s.Apply(next(), ops)
		return check(fmtResult(res, ok, ops))
	case "batch":
		var ops []Op
		for _, line := range strings.Split(d.Input, "\n") {
			if strings.TrimSpace(line) == "" {
				continue
			}
			cmd, a := parseArgs(line)
			ops = append(ops, buildOp(t, cmd, a))
		}
		res, ok := s.Apply(next(), ops)
		return check(fmtResult(res, ok, ops))
	case "txn":
		return check(runTxn(t, s, d, next()))
	case "get":
		kv, ok := s.Get(ddBytes(args["k"]))
		if !ok {
			return "not found\n"
		}
		return fmtKV(kv, false) + "\n"
	case "range":
		start := ddBytes(args["start"])
		var end []byte
		if v, ok := args["end"]; ok {
			end = ddBytes(v)
		}
		if _, ok := args["prefix"]; ok {
			end = PrefixEnd(start)
		}
		opts := RangeOptions{}
		if v, ok := args["limit"]; ok {
			opts.Limit, _ = strconv.Atoi(v)
		}
		_, opts.KeysOnly = args["keys-only"]
		_, opts.CountOnly = args["count-only"]
		r := s.Range(start, end, opts)
		var b strings.Builder
		for _, kv := range r.KVs {
			b.WriteString(fmtKV(kv, opts.KeysOnly) + "\n")
		}
		fmt.Fprintf(&b, "count=%d more=%v rev=%d\n", r.Count, r.More, r.Revision)
		return b.String()
	case "observe":
		s.SetObserver(&recordingObserver{})
		return "ok\n"
	case "events":
		o, _ := s.obs.(*recordingObserver)
		if o == nil {
			d.Fatalf(t, "events needs observe first")
		}
		out := strings.Join(o.lines, "\n")
		for _, r := range o.resets {
			out += fmt.Sprintf("\nreset at %d", r)
		}
		o.lines, o.resets = nil, nil
		if out == "" {
			return "none\n"
		}
		return strings.TrimPrefix(out, "\n") + "\n"
	case "evict":
		var keys []EvictKey
		for _, line := range strings.Split(d.Input, "\n") {
			if _, a := parseArgs("key " + line); a["k"] != "" {
				mod, _ := strconv.ParseInt(a["mod"], 10, 64)
				keys = append(keys, EvictKey{Key: ddBytes(a["k"]), ModRevision: mod})
			}
		}
		n, _ := s.ApplyEvict(next(), keys)
		return check(fmt.Sprintf("evicted=%d rev=%d\n", n, s.Revision()))
	case "mark-applied":
		s.MarkApplied(next())
		return fmt.Sprintf("applied=%d\n", s.AppliedIndex())
	case "stats":
		return fmt.Sprintf("rev=%d applied=%d len=%d mem=%d\n", s.Revision(), s.AppliedIndex(), s.Len(), s.MemoryUsage())
	case "dump":
		var b strings.Builder
		for _, kv := range s.Range(nil, []byte{0}, RangeOptions{}).KVs {
			b.WriteString(fmtKV(kv, false) + "\n")
		}
		if b.Len() == 0 {
			return "empty\n"
		}
		return b.String()
	case "snapshot-roundtrip":
		var buf bytes.Buffer
		sn := s.Snapshot()
		if _, err := sn.WriteTo(&buf); err != nil {
			d.Fatalf(t, "WriteTo: %v", err)
		}
		r := New()
		if err := r.Restore(&buf); err != nil {
			d.Fatalf(t, "Restore: %v", err)
		}
		same := r.Hash() == s.Hash() && r.Revision() == s.Revision() && r.AppliedIndex() == s.AppliedIndex() &&
			r.MemoryUsage() == s.MemoryUsage() && r.Len() == s.Len()
		return fmt.Sprintf("snapshot index=%d rev=%d len=%d identical=%v\n", sn.Index(), sn.Revision(), sn.Len(), same)
	}
	d.Fatalf(t, "unknown command %q", d.Cmd)
	return ""
}

var (
	ddTargets = map[string]CompareTarget{"value": CompareValue, "version": CompareVersion, "create": CompareCreate, "mod": CompareMod}
	ddCmpOps  = map[string]CompareOp{"eq": CompareEqual, "ne": CompareNotEqual, "gt": CompareGreater, "lt": CompareLess}
)

func runTxn(t *testing.T, s *Store, d *datadriven.TestData, index uint64) string {
	var txn Txn
	branch := &txn.Success
	num := func(a map[string]string, k string) int64 {
		n, _ := strconv.ParseInt(a[k], 10, 64)
		return n
	}
	for _, line := range strings.Split(d.Input, "\n") {
		cmd, a := parseArgs(line)
		switch cmd {
		case "":
		case "read":
			txn.Reads = append(txn.Reads, ReadCheck{Key: ddBytes(a["k"]), ModRevision: num(a, "mod")})
		case "range":
			txn.Ranges = append(txn.Ranges, RangeCheck{Key: ddBytes(a["k"]), End: ddBytes(a["end"]), Count: num(a, "count"), MaxModRevision: num(a, "max")})
		case "cmp":
			txn.Compares = append(txn.Compares, Compare{Key: ddBytes(a["k"]), Target: ddTargets[a["target"]], Op: ddCmpOps[a["op"]], Value: ddBytes(a["v"]), Number: num(a, "n")})
		case "success":
			branch = &txn.Success
		case "failure":
			branch = &txn.Failure
		default:
			*branch = append(*branch, buildOp(t, cmd, a))
		}
	}
	res, ok, err := s.ApplyTxn(index, &txn)
	switch {
	case err != nil:
		return fmt.Sprintf("invalid: %v rev=%d\n", err, res.Revision)
	case res.Conflict != nil:
		return fmt.Sprintf("conflict on %s rev=%d\n", res.Conflict, res.Revision)
	}
	ops := txn.Success
	if !res.Succeeded {
		ops = txn.Failure
	}
	var b strings.Builder
	fmt.Fprintf(&b, "succeeded=%v ", res.Succeeded)
	b.WriteString(fmtResult(res.Result, ok, ops))
	for i, r := range res.Ops {
		if ops[i].Type == OpRange {
			for _, kv := range r.KVs {
				fmt.Fprintf(&b, "  op %d: %s\n", i, fmtKV(kv, false))
			}
		}
	}
	return b.String()
}
