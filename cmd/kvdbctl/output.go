package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"unicode/utf8"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

const (
	outputText = "text"
	outputJSON = "json"
)

// kvJSON is a KeyValue as printed by -o json. Keys and values are printed
// as strings when they are valid UTF-8, which is what users mostly store.
// Bytes that are not valid UTF-8 cannot be a JSON string without being
// changed (encoding/json would turn each bad byte into U+FFFD, so \xff\xfe
// and \xff\xfd would print alike): such a key or value is printed in
// standard base64 instead and key_encoding or value_encoding says "base64".
type kvJSON struct {
	Key            string `json:"key"`
	KeyEncoding    string `json:"key_encoding,omitempty"`
	Value          string `json:"value"`
	ValueEncoding  string `json:"value_encoding,omitempty"`
	CreateRevision int64  `json:"create_revision"`
	ModRevision    int64  `json:"mod_revision"`
	Version        int64  `json:"version"`
}

// encodingBase64 is the key_encoding / value_encoding of base64 bytes.
const encodingBase64 = "base64"

// jsonBytes returns b as a JSON string and its encoding: "" for valid
// UTF-8 (the string is b), "base64" otherwise.
func jsonBytes(b []byte) (string, string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), encodingBase64
}

func toKVJSON(kv *kvdbv1.KeyValue) kvJSON {
	out := kvJSON{
		CreateRevision: kv.GetCreateRevision(),
		ModRevision:    kv.GetModRevision(),
		Version:        kv.GetVersion(),
	}
	out.Key, out.KeyEncoding = jsonBytes(kv.GetKey())
	out.Value, out.ValueEncoding = jsonBytes(kv.GetValue())
	return out
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
