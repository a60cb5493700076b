package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/service"
	"github.com/kvdb/kvdb/internal/service/servicetest"
)

func startRealNode(t *testing.T) (*service.Server, string) {
	return servicetest.StartServer(t, nil)
}

func TestREPLTransactions(t *testing.T) {
	srv, addr := startRealNode(t)
	a := newTestApp(t, addr)
	ctx := context.Background()
	exec := func(line string) string {
		var out bytes.Buffer
		if _, err := a.execLine(ctx, &out, line); err != nil {
			return "(error) " + describeError(err) + "\n"
		}
		return out.String()
	}
	steps := []struct{ line, want, prompt string }{
		{"PUT account:1 1000", "OK\n", "kvdb> "},
		{"BEGIN tx1", "OK (transaction tx1 at revision 1)\n", "kvdb(tx1)> "},
		{"BEGIN tx2", "(error) already in transaction tx1: COMMIT or ROLLBACK it first\n", "kvdb(tx1)> "},
		{"GET account:1", "1000\n", "kvdb(tx1)> "},
		{"PUT account:1 900", "QUEUED\n", "kvdb(tx1)> "},
		{"PUT account:2 500 and more", "QUEUED\n", "kvdb(tx1)> "},
		{"GET account:2", "500 and more\n", "kvdb(tx1)> "},
		{"GET nope", "(nil)\n", "kvdb(tx1)> "},
		{"RANGE account:", "account:1\n900\naccount:2\n500 and more\n", "kvdb(tx1)> "},
		{"BATCH PUT a 1", "(error) BATCH is not allowed inside transaction tx1: use PUT/DELETE, then COMMIT\n", "kvdb(tx1)> "},
		{"COMMIT", "OK (committed at revision 2)\n", "kvdb> "},
		{"GET account:2", "500 and more\n", "kvdb> "},
		{"BEGIN", "", ""},
		{"DELETE account:2", "QUEUED\n", ""},
		{"ROLLBACK", "OK (rolled back)\n", "kvdb> "},
		{"GET account:2", "500 and more\n", "kvdb> "},
	}
	for _, s := range steps {
		got := exec(s.line)
		if s.want != "" && got != s.want {
			t.Fatalf("%s: got %q, want %q", s.line, got, s.want)
		}
		if s.prompt != "" && a.prompt() != s.prompt {
			t.Fatalf("after %s: prompt %q, want %q", s.line, a.prompt(), s.prompt)
		}
	}

	// A conflicting write from elsewhere aborts COMMIT, which says so.
	exec("BEGIN tx3")
	exec("GET account:1")
	exec("PUT account:1 1")
	other := newTestApp(t, addr)
	if _, err := other.execLine(ctx, io.Discard, "PUT account:1 777"); err != nil {
		t.Fatal(err)
	}
	got := exec("COMMIT")
	if !strings.Contains(got, `key "account:1"`) || !strings.Contains(got, "(Aborted)") || a.prompt() != "kvdb> " {
		t.Fatalf("conflicting COMMIT = %q, prompt %q", got, a.prompt())
	}
	if kv, _ := srv.Store().Get([]byte("account:1")); string(kv.Value) != "777" {
		t.Fatalf("account:1 = %q after an aborted commit", kv.Value)
	}
	stats := exec("STATS")
	if !strings.Contains(stats, `"transactions": {`) || !strings.Contains(stats, `"aborts": 1`) {
		t.Fatalf("STATS lacks the transactions section:\n%s", stats)
	}
}

func TestTxnCommand(t *testing.T) {
	srv, addr := startRealNode(t)
	runCLI := func(stdin string, args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := run(context.Background(), append([]string{"--address", addr}, args...), strings.NewReader(stdin), &out, &errb, func(string) string { return "" })
		return out.String(), errb.String(), code
	}
	out, errs, code := runCLI("", "txn", "--compare", `mod("lock") = "0"`, "--success", "put lock me", "--failure", "get lock")
	if code != 0 || out != "SUCCESS\nOK\n" {
		t.Fatalf("first txn: %q %q %d", out, errs, code)
	}
	out, _, _ = runCLI("", "txn", "--compare", `mod("lock") = "0"`, "--success", "put lock you", "--failure", "get lock")
	if out != "FAILURE\nlock\nme\n" {
		t.Fatalf("second txn = %q", out)
	}
	stdin := "value(\"lock\") = \"me\"\nversion(lock) > 0\n\nput lock \"not me\"\nget lock\n\ndel lock\n"
	out, errs, code = runCLI(stdin, "txn", "-o", "json")
	if code != 0 || !strings.Contains(out, `"succeeded": true`) || !strings.Contains(out, `"value": "not me"`) {
		t.Fatalf("stdin txn: %q %q %d", out, errs, code)
	}
	if kv, _ := srv.Store().Get([]byte("lock")); string(kv.Value) != "not me" {
		t.Fatalf("lock = %q", kv.Value)
	}
	_, errs, code = runCLI("", "txn", "--compare", `bogus("k") = "1"`, "--success", "put k v")
	if code != 1 || !strings.Contains(errs, "cannot parse") {
		t.Fatalf("bad compare: %q %d", errs, code)
	}
	// etcd's lock: the key is free, take it with the session's lease.
	out, errs, code = runCLI("", "lease", "grant", "600")
	var hexID string
	if _, err := fmt.Sscanf(out, "lease %s granted", &hexID); code != 0 || err != nil {
		t.Fatalf("lease grant: %q %q %d", out, errs, code)
	}
	id, _ := parseLeaseID(hexID)
	out, errs, code = runCLI("", "txn", "--compare", `create("session") = "0"`, "--success", "put session me --lease "+hexID)
	if kv, ok := srv.Store().Get([]byte("session")); code != 0 || !ok || kv.Lease != id {
		t.Fatalf("txn put --lease: %q %q %d; session = %+v, %v", out, errs, code, kv, ok)
	}
	_, errs, code = runCLI("", "txn", "--success", "put other me --lease 12ab")
	if code == 0 || !strings.Contains(errs, "requested lease not found") {
		t.Fatalf("txn put with a missing lease: %q %d", errs, code)
	}
}

func TestParseExecutePut(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" means a parse error
	}{
		{`put k v`, `key:"k" value:"v"`},
		{`put k v --lease 1f`, `key:"k" value:"v" lease:31`},
		{`put k v --lease=1f`, `key:"k" value:"v" lease:31`},
		{`put k v --ttl 1.5s`, `key:"k" value:"v" ttl_ms:1500`},
		{`put "a b" v --ttl=2m`, `key:"a b" value:"v" ttl_ms:120000`},
		{`put k v --ttl -1s`, ""},
		{`put k v --ttl`, ""},
		{`put k v --lease xyz`, ""},
		{`put k v --lease 0`, ""},
		{`put k v extra`, ""},
		{`put k v --prev-kv`, ""},
	}
	for _, tc := range tests {
		ops, err := parseExecuteOps("success", []string{tc.in})
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: parsed as %v, want an error", tc.in, ops)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got := strings.Join(strings.Fields(ops[0].GetPut().String()), " "); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestParseCompare(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" means a parse error
	}{
		{`mod("k") = "0"`, `key:"k" operator:COMPARE_OPERATOR_EQUAL mod_revision:0`},
		{`value("a b") != "x y"`, `key:"a b" operator:COMPARE_OPERATOR_NOT_EQUAL value:"x y"`},
		{`version(k) > 2`, `key:"k" operator:COMPARE_OPERATOR_GREATER version:2`},
		{`CREATE("k") < "5"`, `key:"k" operator:COMPARE_OPERATOR_LESS create_revision:5`},
		{`mod("k") = "x"`, ""},
		{`mod("k") ~ "1"`, ""},
		{`lease("k") = "1"`, ""},
	}
	for _, tc := range tests {
		got, err := parseCompare(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: parsed as %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if s := strings.Join(strings.Fields(got.String()), " "); s != tc.want {
			t.Errorf("%s: got %s, want %s", tc.in, s, tc.want)
		}
	}
	if _, err := parseExecuteOps("success", []string{"put k"}); err == nil {
		t.Error("put without a value parsed")
	}
	if ops, err := parseExecuteOps("success", []string{`put "a key" "v \"q\""`}); err != nil || string(ops[0].GetPut().GetValue()) != `v "q"` {
		t.Errorf("quoted put = %v, %v", ops, err)
	}
	var _ = kvdbv1.CompareOperator_COMPARE_OPERATOR_EQUAL
}
