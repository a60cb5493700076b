package main

import (
	"encoding/json"
	"fmt"
	"io"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

const (
	outputText = "text"
	outputJSON = "json"
)

// kvJSON is a KeyValue as printed by -o json. Keys and values are printed as
// strings because that is what users store and read; bytes that are not
// valid UTF-8 come out as U+FFFD (use text output for raw bytes).
type kvJSON struct {
	Key            string `json:"key"`
	Value          string `json:"value"`
	CreateRevision int64  `json:"create_revision"`
	ModRevision    int64  `json:"mod_revision"`
	Version        int64  `json:"version"`
}

func toKVJSON(kv *kvdbv1.KeyValue) kvJSON {
	return kvJSON{
		Key:            string(kv.GetKey()),
		Value:          string(kv.GetValue()),
		CreateRevision: kv.GetCreateRevision(),
		ModRevision:    kv.GetModRevision(),
		Version:        kv.GetVersion(),
	}
}

// writeJSON prints v indented. HTML escaping is off because values are
// often JSON or markup themselves and "\u003c" would only confuse.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("writing json: %w", err)
	}
	return nil
}

// writeLine prints b exactly as stored followed by a newline: no quoting or
// escaping, so `kvdbctl get k > file` gives back what was put.
func writeLine(w io.Writer, b []byte) error {
	buf := make([]byte, 0, len(b)+1)
	buf = append(buf, b...)
	buf = append(buf, '\n')
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}

// writeText prints a formatted line, reporting write errors (a closed pipe)
// instead of dropping them.
func writeText(w io.Writer, format string, args ...any) error {
	if _, err := fmt.Fprintf(w, format, args...); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}
