package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeRunClientAddress: make run-client passes ADDRESS to kvdbctl as
// given, instead of gluing "localhost" in front of it.
func TestMakeRunClientAddress(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	for addr, want := range map[string]string{
		"":               "kvdbctl -address 127.0.0.1:8080", // the default (loopback only)
		"127.0.0.1:8080": "kvdbctl -address 127.0.0.1:8080",
		"db.example:9":   "kvdbctl -address db.example:9",
	} {
		args := []string{"-n", "-C", filepath.Join("..", ".."), "run-client"}
		if addr != "" {
			args = append(args, "ADDRESS="+addr)
		}
		out, err := exec.Command("make", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("make %v: %v\n%s", args, err, out)
		}
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("make run-client ADDRESS=%q runs\n%s\nwant a line ending in %q", addr, out, want)
		}
	}
}

// TestPutFromStdinAndFiles: values too large for a command-line argument
// go in through stdin or --value-file and come out through --output-file
// byte for byte.
func TestPutFromStdinAndFiles(t *testing.T) {
	fs, addr := startServer(t)
	big := bytes.Repeat([]byte("0123456789abcdef\x00\xff\n"), 1<<16) // 1.1 MiB, not UTF-8, with newlines
	dir := t.TempDir()

	out, errOut, code := runCLI(t, nil, string(big), "--address", addr, "put", "big", "-")
	if code != 0 || out != "OK\n" {
		t.Fatalf("put big -: exit %d %q %q", code, out, errOut)
	}
	if v, _ := fs.value("big"); v != string(big) {
		t.Fatalf("stdin value stored as %d bytes, want %d", len(v), len(big))
	}

	in := filepath.Join(dir, "in.bin")
	if err := os.WriteFile(in, big[:300_000], 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := runCLI(t, nil, "ignored", "--address", addr, "put", "file", "--value-file", in); code != 0 || out != "OK\n" {
		t.Fatalf("put --value-file: exit %d %q %q", code, out, errOut)
	}
	outFile := filepath.Join(dir, "out.bin")
	if out, errOut, code := runCLI(t, nil, "", "--address", addr, "get", "file", "--output-file", outFile); code != 0 || out != "" {
		t.Fatalf("get --output-file: exit %d %q %q", code, out, errOut)
	}
	if got, err := os.ReadFile(outFile); err != nil || !bytes.Equal(got, big[:300_000]) {
		t.Fatalf("--output-file holds %d bytes (%v), want the %d put", len(got), err, 300_000)
	}

	// "-" after "--" is the one-byte value, not stdin.
	if _, errOut, code := runCLI(t, nil, "from stdin", "--address", addr, "put", "dash", "--", "-"); code != 0 {
		t.Fatalf("put dash -- -: %s", errOut)
	}
	if v, _ := fs.value("dash"); v != "-" {
		t.Errorf("put k -- - stored %q", v)
	}
	// A missing key writes no file; a missing --value-file is an error.
	missing := filepath.Join(dir, "missing.bin")
	if _, errOut, code := runCLI(t, nil, "", "--address", addr, "get", "nope", "--output-file", missing); code != 1 || errOut != "key not found\n" {
		t.Errorf("get missing --output-file: exit %d %q", code, errOut)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("get of a missing key created %s", missing)
	}
	if _, errOut, code := runCLI(t, nil, "", "--address", addr, "put", "k", "--value-file", missing); code != 1 || !strings.Contains(errOut, "--value-file") {
		t.Errorf("put --value-file missing: exit %d %q", code, errOut)
	}
	if _, errOut, code := runCLI(t, nil, "", "--address", addr, "put", "k", "v", "--value-file", in); code != 1 || !strings.Contains(errOut, "accepts 1 arg") {
		t.Errorf("put KEY VALUE --value-file: exit %d %q", code, errOut)
	}
}

// TestEndpointsFollowTheLeader: with --endpoints kvdbctl talks to the node
// that says it leads, skipping dead ones, else to the first that answers.
func TestEndpointsFollowTheLeader(t *testing.T) {
	follower, fAddr := startServer(t)
	follower.mu.Lock()
	follower.follower = true
	follower.mu.Unlock()
	follower.set("k", "from follower")
	leader, lAddr := startServer(t)
	leader.set("k", "from leader")
	dead := closedAddress(t)

	for _, args := range [][]string{
		{"--endpoints", dead + "," + fAddr + "," + lAddr},
		{"--endpoints", fAddr, "--endpoints", lAddr}, // repeated flag
		{"--address", fAddr + "," + lAddr},           // --address takes a list too
	} {
		out, errOut, code := runCLI(t, nil, "", append(args, "get", "k")...)
		if code != 0 || out != "from leader\n" {
			t.Errorf("%v: exit %d stdout %q stderr %q", args, code, out, errOut)
		}
	}
	out, errOut, code := runCLI(t, nil, "", "--endpoints", dead+","+fAddr, "get", "k")
	if code != 0 || out != "from follower\n" {
		t.Errorf("no leader among endpoints: exit %d stdout %q stderr %q", code, out, errOut)
	}
	dead2 := closedAddress(t)
	_, errOut, code = runCLI(t, nil, "", "--endpoints", dead+","+dead2, "--timeout", "2s", "get", "k")
	if code != 1 || !strings.Contains(errOut, "cannot reach KVDB server at "+dead+","+dead2) {
		t.Errorf("all endpoints dead: exit %d stderr %q", code, errOut)
	}
	_, errOut, code = runCLI(t, nil, "", "--address", lAddr, "--endpoints", lAddr, "get", "k")
	if code != 1 || !strings.Contains(errOut, "either --address or --endpoints") {
		t.Errorf("--address and --endpoints: exit %d stderr %q", code, errOut)
	}
}

// TestAddressDefaultPort: an address without a port means port 8080, as the
// server's default -address, not gRPC's 443.
func TestAddressDefaultPort(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1":      "127.0.0.1:8080",
		"localhost":      "localhost:8080",
		"db.example":     "db.example:8080",
		":9000":          "localhost:9000",
		"10.0.0.1:9":     "10.0.0.1:9",
		"host:":          "host:8080",
		"::1":            "[::1]:8080",
		"[::1]":          "[::1]:8080",
		"[::1]:7":        "[::1]:7",
		" 127.0.0.1:1 ":  "127.0.0.1:1",
		"localhost:8080": "localhost:8080",
	} {
		if got, err := normalizeAddress(in); err != nil || got != want {
			t.Errorf("normalizeAddress(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a b", "http://x:1/"} {
		if got, err := normalizeAddress(bad); err == nil {
			t.Errorf("normalizeAddress(%q) = %q, want an error", bad, got)
		}
	}
	// The error of an unreachable port-less address names port 8080.
	_, errOut, code := runCLI(t, nil, "", "--address", "127.0.0.1", "--timeout", "2s", "get", "k")
	if code != 1 || !strings.Contains(errOut, "cannot reach KVDB server at 127.0.0.1:8080") {
		t.Errorf("exit %d stderr %q", code, errOut)
	}
}

func TestVersionFlag(t *testing.T) {
	for _, flag := range []string{"--version", "-version"} {
		out, errOut, code := runCLI(t, nil, "", flag)
		if code != 0 || !strings.HasPrefix(out, "kvdbctl dev (commit unknown, built unknown, go") || errOut != "" {
			t.Errorf("%s: exit %d stdout %q stderr %q", flag, code, out, errOut)
		}
	}
}

// TestRangeOutputHints: on a terminal long values are cut short (unless
// --full-values), never in a pipe; a limited range says how many keys more.
func TestRangeOutputHints(t *testing.T) {
	fs, addr := startServer(t)
	long := strings.Repeat("é", 300) // 600 bytes: the cut must not split a character
	fs.set("a", "short")
	fs.set("b", long)
	fs.set("c", "3")

	run := func(terminal, full bool, line string) string {
		t.Helper()
		a := newTestApp(t, addr)
		a.terminal = func() bool { return terminal }
		a.fullValues = full
		var out bytes.Buffer
		if _, err := a.execLine(context.Background(), &out, line); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		return out.String()
	}
	cut := strings.Repeat("é", 128) + "… [600 bytes; --full-values prints them all]"
	if got, want := run(true, false, "RANGE"), "a\nshort\nb\n"+cut+"\nc\n3\n"; got != want {
		t.Errorf("terminal RANGE:\n got %q\nwant %q", got, want)
	}
	if got, want := run(true, true, "RANGE"), "a\nshort\nb\n"+long+"\nc\n3\n"; got != want {
		t.Errorf("terminal RANGE with --full-values cut the value: %q", got)
	}
	if got, want := run(false, false, "RANGE"), "a\nshort\nb\n"+long+"\nc\n3\n"; got != want {
		t.Errorf("piped RANGE cut the value: %q", got)
	}
	if got, want := run(false, false, "RANGE a 1"), "a\nshort\n"; got != want {
		t.Errorf("RANGE a 1: %q", got)
	}
	if got, want := run(false, false, "RANGE \"\" 1"), "(empty)\n"; got != want {
		t.Errorf("RANGE with nothing: %q", got)
	}
	if got := run(false, false, "RANGE"); strings.Contains(got, "more") {
		t.Errorf("unlimited RANGE says more: %q", got)
	}
	// The subcommand: data on stdout, the hint on stderr.
	stdout, errOut, code := runCLI(t, nil, "", "--address", addr, "range", "--from", "a", "--limit", "1", "--keys-only")
	if code != 0 || stdout != "a\n" || errOut != "… 2 more keys (raise --limit to see them)\n" {
		t.Errorf("range --limit 1: exit %d stdout %q stderr %q", code, stdout, errOut)
	}
}

// TestJSONNonUTF8: -o json prints bytes that are not UTF-8 in base64 and
// says so, so that distinct keys and values stay distinct.
func TestJSONNonUTF8(t *testing.T) {
	fs, addr := startServer(t)
	fs.set("\xff\xfe", "\xff\xfd")
	fs.set("\xff\xff", "\xff\xfe")
	fs.set("text", "héllo")
	out, errOut, code := runCLI(t, nil, "", "--address", addr, "range", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got rangeJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	b64 := base64.StdEncoding.EncodeToString
	want := []kvJSON{
		{Key: "text", Value: "héllo"},
		{Key: b64([]byte("\xff\xfe")), KeyEncoding: "base64", Value: b64([]byte("\xff\xfd")), ValueEncoding: "base64"},
		{Key: b64([]byte("\xff\xff")), KeyEncoding: "base64", Value: b64([]byte("\xff\xfe")), ValueEncoding: "base64"},
	}
	if len(got.KVs) != len(want) {
		t.Fatalf("got %d kvs: %s", len(got.KVs), out)
	}
	for i, w := range want {
		g := got.KVs[i]
		if g.Key != w.Key || g.KeyEncoding != w.KeyEncoding || g.Value != w.Value || g.ValueEncoding != w.ValueEncoding {
			t.Errorf("kv %d = %+v, want %+v", i, g, w)
		}
	}
	if strings.Contains(out, "\ufffd") || strings.Count(out, "_encoding") != 4 {
		t.Errorf("output:\n%s", out)
	}
	// get: one key, same rule.
	out, _, _ = runCLI(t, nil, "", "--address", addr, "get", "text", "-o", "json")
	if strings.Contains(out, "_encoding") || !strings.Contains(out, `"value": "héllo"`) {
		t.Errorf("get of UTF-8 text: %s", out)
	}
}
