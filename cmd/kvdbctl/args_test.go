package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestNormalizeArgs(t *testing.T) {
	a := &app{getenv: func(string) string { return "" }}
	long := longFlagNames(newRootCmd(a))
	tests := []struct {
		in, want []string
	}{
		{[]string{"-address", "h:1"}, []string{"--address", "h:1"}},
		{[]string{"-address=h:1", "get", "k"}, []string{"--address=h:1", "get", "k"}},
		{[]string{"-timeout", "2s", "-output", "json"}, []string{"--timeout", "2s", "--output", "json"}},
		{[]string{"-consistency=s"}, []string{"--consistency=s"}},
		// Subcommand flags are known too.
		{[]string{"range", "-from", "a", "-limit", "2", "-keys-only"}, []string{"range", "--from", "a", "--limit", "2", "--keys-only"}},
		{[]string{"delete", "-prefix", "a"}, []string{"delete", "--prefix", "a"}},
		// Shorthands, unknown names, values and double-dash flags are left alone.
		{[]string{"-o", "json", "-ojson"}, []string{"-o", "json", "-ojson"}},
		{[]string{"--address", "h:1", "-bogus", "-1"}, []string{"--address", "h:1", "-bogus", "-1"}},
		{[]string{"-h"}, []string{"-h"}},
		{[]string{"-help"}, []string{"--help"}},
		// Nothing after "--" is a flag.
		{[]string{"put", "--", "k", "-address"}, []string{"put", "--", "k", "-address"}},
	}
	for _, tt := range tests {
		if got := normalizeArgs(tt.in, long); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("normalizeArgs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSingleDashFlagsEndToEnd(t *testing.T) {
	fs, addr := startServer(t)
	fs.set("k", "v")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"-address", []string{"-address", addr, "get", "k"}, "v\n"},
		{"-address=", []string{"-address=" + addr, "get", "k"}, "v\n"},
		{"-timeout -output", []string{"-address", addr, "-timeout", "3s", "-output", "json", "delete", "zz"}, "{\n  \"deleted\": 0,\n  \"revision\": 1\n}\n"},
		{"after subcommand", []string{"get", "k", "-address", addr}, "v\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCLI(t, nil, "", tt.args...)
			if code != 0 || out != tt.want {
				t.Errorf("exit %d stdout %q stderr %q, want stdout %q", code, out, errOut, tt.want)
			}
		})
	}
}

func TestSingleDashAddressStartsREPL(t *testing.T) {
	// The README's invocation: `client -address localhost:8080`, then
	// commands. With a non-terminal stdin they are read from the pipe.
	_, addr := startServer(t)
	out, errOut, code := runCLI(t, nil, "PUT a 1\nGET a\n", "-address", addr)
	if code != 0 || out != "OK\n1\n" {
		t.Errorf("exit %d stdout %q stderr %q", code, out, errOut)
	}
}

func TestAddressEnv(t *testing.T) {
	fs, addr := startServer(t)
	fs.set("k", "from-env-server")
	dead := closedAddress(t)

	// KVDB_ADDRESS is used when --address is not given.
	out, errOut, code := runCLI(t, map[string]string{addressEnv: addr}, "", "get", "k")
	if code != 0 || out != "from-env-server\n" {
		t.Errorf("env: exit %d stdout %q stderr %q", code, out, errOut)
	}
	// The flag wins over the environment, in both spellings.
	for _, flag := range []string{"--address", "-address"} {
		out, errOut, code = runCLI(t, map[string]string{addressEnv: dead}, "", flag, addr, "get", "k")
		if code != 0 || out != "from-env-server\n" {
			t.Errorf("%s over env: exit %d stdout %q stderr %q", flag, code, out, errOut)
		}
	}
	// And a bad environment address is the one named in the error.
	_, errOut, code = runCLI(t, map[string]string{addressEnv: dead}, "", "get", "k")
	if code != 1 || !strings.Contains(errOut, "cannot reach KVDB server at "+dead) {
		t.Errorf("dead env address: exit %d stderr %q", code, errOut)
	}
}

func TestDialTarget(t *testing.T) {
	for in, want := range map[string]string{
		":8080":          "localhost:8080",
		"localhost:8080": "localhost:8080",
		"10.0.0.1:9":     "10.0.0.1:9",
	} {
		if got := dialTarget(in); got != want {
			t.Errorf("dialTarget(%q) = %q, want %q", in, got, want)
		}
	}
}
