package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/service"
	"github.com/kvdb/kvdb/internal/service/servicetest"
	"github.com/kvdb/kvdb/internal/watch"
)

// TestWatchCommand runs kvdbctl watch and the shell's WATCH against a real
// node: text and JSON lines, prefix, range, prev-kv, a replay from a past
// revision, and the compacted error.
func TestWatchCommand(t *testing.T) {
	_, addr := servicetest.StartServer(t, func(c *service.Config) { c.WatchHistory = watch.Config{HistoryRevisions: 50} })
	a := newTestApp(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cli, err := a.client()
	if err != nil {
		t.Fatal(err)
	}
	put := func(k, v string) int64 {
		r, err := cli.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte(k), Value: []byte(v)})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetHeader().GetRevision()
	}
	first := put("app/a", "1")
	put("app/b", "two words")
	put("app/a", "3")
	if _, err := cli.kv.Delete(ctx, &kvdbv1.DeleteRequest{Key: []byte("app/b")}); err != nil {
		t.Fatal(err)
	}
	rev := fmt.Sprint(first)
	tests := []struct {
		name    string
		args    []string
		want    string
		wantErr string
	}{
		{"prefix", []string{"watch", "app/", "--prefix", "--rev", rev, "--max-events", "4"},
			"PUT app/a 1\nPUT app/b two words\nPUT app/a 3\nDELETE app/b\n", ""},
		{"one key prev-kv", []string{"watch", "app/a", "--rev", rev, "--prev-kv", "--max-events", "2"},
			"PUT app/a 1\nPUT app/a 3\n1\n", ""},
		{"range", []string{"watch", "app/b", "app/c", "--rev", rev, "--max-events", "2"},
			"PUT app/b two words\nDELETE app/b\n", ""},
		{"json", []string{"watch", "app/a", "--rev", rev, "--max-events", "1", "-o", "json"},
			fmt.Sprintf(`{"type":"PUT","kv":{"key":"app/a","value":"1","create_revision":%d,"mod_revision":%d,"version":1}}`+"\n", first, first), ""},
		{"prefix and end", []string{"watch", "a", "b", "--prefix"}, "", "--prefix cannot be combined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(ctx, append([]string{"--address", addr}, tc.args...), strings.NewReader(""), &out, &errOut, func(string) string { return "" })
			if out.String() != tc.want {
				t.Errorf("stdout %q, want %q (stderr %q)", out.String(), tc.want, errOut.String())
			}
			if tc.wantErr == "" && code != 0 || tc.wantErr != "" && (code == 0 || !strings.Contains(errOut.String(), tc.wantErr)) {
				t.Errorf("exit %d, stderr %q; want error %q", code, errOut.String(), tc.wantErr)
			}
		})
	}

	var out bytes.Buffer
	if _, err := a.execLine(ctx, &out, "WATCH app/ PREFIX REV "+rev+" COUNT 2"); err != nil {
		t.Fatal(err)
	}
	if out.String() != "PUT app/a 1\nPUT app/b two words\n" {
		t.Errorf("WATCH: %q", out.String())
	}
	if _, err := a.execLine(ctx, &out, "WATCH"); err == nil || !strings.Contains(err.Error(), "usage: WATCH") {
		t.Errorf("bare WATCH: %v", err)
	}

	// Past the history window: an error naming the oldest revision held.
	for i := range 60 {
		put("other", fmt.Sprint(i))
	}
	var errOut bytes.Buffer
	code := run(ctx, []string{"--address", addr, "watch", "app/", "--prefix", "--rev", "1"}, strings.NewReader(""), &out, &errOut, func(string) string { return "" })
	if code == 0 || !strings.Contains(errOut.String(), "compacted") || !strings.Contains(errOut.String(), "oldest revision held is 15") {
		t.Errorf("compacted: exit %d, stderr %q", code, errOut.String())
	}
}
