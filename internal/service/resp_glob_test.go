package service

import "testing"

// TestGlobMatchesRedis checks globMatch, behind KEYS and SCAN MATCH,
// against the answers of Redis 7.0.15's KEYS for the same pattern and key
// (each pair run against a real redis-server with that one key stored),
// the edge cases included: classes left open, "[" alone, backslashes at the
// end of a pattern and inside a class, "[a-]".
func TestGlobMatchesRedis(t *testing.T) {
	for _, tc := range []struct {
		pattern, key string
		match        bool
	}{
		{`*`, `abc`, true},
		{`a*`, `abc`, true},
		{`*c`, `abc`, true},
		{`a*c`, `abc`, true},
		{`a*d`, `abc`, false},
		{`?`, `a`, true},
		{`?`, `ab`, false},
		{`a?c`, `abc`, true},
		{`[abc]`, `b`, true},
		{`[abc]`, `d`, false},
		{`[^abc]`, `d`, true},
		{`[^abc]`, `a`, false},
		{`[a-c]`, `b`, true},
		{`[c-a]`, `b`, true},
		{`[a-c]`, `d`, false},
		{`[`, `[`, false},
		{`[`, `a`, false},
		{`[a`, `a`, true},
		{`[a`, `b`, false},
		{`[a-`, `a`, true},
		{`[a-`, `-`, true},
		{`[a-]`, `a`, true},
		{`[a-]`, `]`, true},
		{`[a-]`, `^`, true},
		{`[^`, `x`, true},
		{`[\]]`, `]`, true},
		{`[\`, `\`, true},
		{`\`, `\`, true},
		{`*\`, `\`, true},
		{`*\`, `x\`, true},
		{`\*`, `*`, true},
		{`\*`, `a`, false},
		{`a\`, `a\`, true},
		{`\a`, `a`, true},
		{`*a*b*`, `xaybz`, true},
		{`*a*b`, `xayb`, true},
		{`a**b`, `ab`, true},
		{`**`, `x`, true},
		{`*[`, `a[`, false},
		{`[]]`, `]`, false},
		{`[]a]`, `a`, false},
		{`[!a]`, `b`, false},
		{`h[ae]llo`, `hallo`, true},
		{`h[^e]llo`, `hello`, false},
		{`h*llo`, `heeeello`, true},
		{`ab[`, `ab[`, false},
	} {
		if got := globMatch([]byte(tc.pattern), []byte(tc.key)); got != tc.match {
			t.Errorf("globMatch(%q, %q) = %v, Redis says %v", tc.pattern, tc.key, got, tc.match)
		}
	}
}

// FuzzGlobMatch runs globMatch on any pattern and key: it must return,
// and a pattern with no special byte must match exactly itself.
func FuzzGlobMatch(f *testing.F) {
	f.Add([]byte("h[^e]llo*"), []byte("hallo"))
	f.Add([]byte("[a-"), []byte("-"))
	f.Add([]byte("*\\"), []byte("x\\"))
	f.Fuzz(func(t *testing.T, p, s []byte) {
		if len(p) > 64 || len(s) > 64 {
			return
		}
		got := globMatch(p, s)
		if len(globPrefix(p)) == len(p) && got != (string(p) == string(s)) {
			t.Fatalf("literal pattern %q against %q: %v", p, s, got)
		}
	})
}
