package resp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

var testLimits = Limits{MaxBulk: 1 << 20, MaxArgs: 1024, MaxRequest: 2 << 20, Inline: true}

// readAll parses every command of in, fed to the Reader in chunks of step
// bytes.
func readAll(t *testing.T, in string, step int, lim Limits) ([][]string, error) {
	t.Helper()
	rd := NewReader(&chunkReader{data: []byte(in), step: step}, 64, lim)
	var out [][]string
	for range 100_000 {
		args, ok, err := rd.Next()
		if err != nil {
			return out, err
		}
		if !ok {
			if err := rd.Fill(); err != nil {
				return out, err
			}
			continue
		}
		var cmd []string
		for _, a := range args {
			cmd = append(cmd, string(a))
		}
		out = append(out, cmd)
	}
	t.Fatal("no end")
	return nil, nil
}

type chunkReader struct {
	data []byte
	step int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.data[:min(c.step, len(c.data))])
	c.data = c.data[n:]
	return n, nil
}

func TestReaderCommands(t *testing.T) {
	in := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n" +
		"*0\r\n" + "*-1\r\n" +
		"*2\r\n$3\r\nGET\r\n$0\r\n\r\n" +
		"PING\r\n" + "   \r\n" +
		"set  \"a b\" \"x\\x41\\n\"\n" +
		"PING\rPING\r\n" +
		"set 'a b' 'it\\'s \\n' \"\\a\\b\"\r\n" +
		"*1\r\n$" + "200" + "\r\n" + strings.Repeat("v", 200) + "\r\n"
	want := [][]string{{"SET", "k", "hello"}, {"GET", ""}, {"PING"}, {"set", "a b", "xA\n"}, {"PING", "PING"},
		{"set", "a b", "it's \\n", "\a\b"}, {strings.Repeat("v", 200)}}
	for _, step := range []int{1, 3, 7, 64, 1 << 20} {
		got, err := readAll(t, in, step, testLimits)
		if !errors.Is(err, io.EOF) {
			t.Fatalf("step %d: %v", step, err)
		}
		if len(got) != len(want) {
			t.Fatalf("step %d: got %q", step, got)
		}
		for i := range want {
			if strings.Join(got[i], "|") != strings.Join(want[i], "|") {
				t.Fatalf("step %d: command %d = %q, want %q", step, i, got[i], want[i])
			}
		}
	}
}

func TestReaderMalformed(t *testing.T) {
	noInline := testLimits
	noInline.Inline = false
	for _, tc := range []struct {
		name, in string
		lim      Limits
	}{
		{"negative count", "*-5\r\n", testLimits},
		{"huge bulk", "*1\r\n$99999999999\r\n", testLimits},
		{"huge count", "*99999999999\r\n", testLimits},
		{"more arguments than MaxArgs", "*1025\r\n", testLimits},
		{"bulk over limit", "*1\r\n$2000000\r\n", testLimits},
		{"negative bulk", "*1\r\n$-1\r\n", testLimits},
		{"bulk length -0", "*1\r\n$-0\r\n", testLimits},
		{"bulk length with a leading zero", "*1\r\n$01\r\na\r\n", testLimits},
		{"count -0", "*-0\r\n", testLimits},
		{"not a bulk", "*1\r\n:1\r\n", testLimits},
		{"bad digits", "*1x\r\n", testLimits},
		{"long header", "*" + strings.Repeat("1", 40), testLimits},
		{"no CR", "*1\n$1\r\na\r\n", testLimits},
		{"bulk not terminated", "*1\r\n$1\r\nab\r\n", testLimits},
		{"inline refused", "PING\r\n", noInline},
		{"unbalanced quotes", "SET \"a\r\n", testLimits},
		{"unbalanced single quotes", "SET 'a\r\n", testLimits},
		{"single quote not followed by a space", "SET 'a'b\r\n", testLimits},
		{"too big inline", strings.Repeat("a", maxInline+1), testLimits},
		{"request over the limit", "*2\r\n$1000000\r\n" + strings.Repeat("a", 1000002) + "$1000000\r\n" + strings.Repeat("a", 1000002),
			Limits{MaxBulk: 1 << 20, MaxArgs: 10, MaxRequest: 1 << 20}},
	} {
		_, err := readAll(t, tc.in, 4096, tc.lim)
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: err = %v, want a protocol error", tc.name, err)
		}
	}
	// Unterminated bulk: the reader waits for the rest, and the stream's
	// end is an EOF, never a large buffer.
	rd := NewReader(strings.NewReader("*1\r\n$1000000\r\nabc"), 64, testLimits)
	for range 10 {
		if _, ok, err := rd.Next(); ok || err != nil {
			t.Fatal(ok, err)
		}
		if err := rd.Fill(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
	}
	if len(rd.buf) > 1024 {
		t.Fatalf("buffer grew to %d for 19 bytes", len(rd.buf))
	}
}

func TestWriter(t *testing.T) {
	var b []byte
	b = AppendSimple(b, "OK")
	b = AppendError(b, "ERR bad\r\nthing")
	b = AppendInt(b, -3)
	b = AppendBulk(b, []byte("v"))
	b = AppendNull(b, false)
	b = AppendNull(b, true)
	b = AppendNullArray(b, false)
	b = AppendArray(b, 2)
	b = AppendMap(b, 1, false)
	b = AppendMap(b, 1, true)
	b = AppendSet(b, 1, true)
	b = AppendDouble(b, []byte("1.5"), false)
	b = AppendDouble(b, []byte("1.5"), true)
	b = AppendVerbatim(b, "hi", true)
	want := "+OK\r\n-ERR bad  thing\r\n:-3\r\n$1\r\nv\r\n$-1\r\n_\r\n*-1\r\n*2\r\n*2\r\n%1\r\n~1\r\n$3\r\n1.5\r\n,1.5\r\n=6\r\ntxt:hi\r\n"
	if string(b) != want {
		t.Fatalf("got %q", b)
	}
}

func FuzzReader(f *testing.F) {
	for _, s := range []string{"*1\r\n$4\r\nPING\r\n", "*-5\r\n", "*1\r\n$99999999999\r\n", "*2\r\n$1\r\na\r\n$1\r\nb", "SET a \"b\\x41\"\r\n", "*1\r\n$3\r\nabc\r\n*0\r\n"} {
		f.Add([]byte(s), uint8(3))
	}
	lim := Limits{MaxBulk: 4096, MaxArgs: 64, MaxRequest: 8192, Inline: true}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		rd := NewReader(&chunkReader{data: bytes.Clone(in), step: int(step) + 1}, 64, lim)
		for range 10_000 {
			args, ok, err := rd.Next()
			if err != nil {
				return
			}
			if !ok {
				if rd.Fill() != nil {
					break
				}
				continue
			}
			if len(args) > lim.MaxArgs {
				t.Fatalf("%d args", len(args))
			}
			for _, a := range args {
				if len(a) > max(lim.MaxBulk, maxInline) {
					t.Fatalf("argument of %d bytes", len(a))
				}
			}
		}
		if len(rd.buf) > lim.MaxRequest+maxHeader*4 {
			t.Fatalf("buffer of %d bytes", len(rd.buf))
		}
	})
}

// loopReader replays one request forever.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.data[l.off:])
		n += c
		l.off = (l.off + c) % len(l.data)
	}
	return n, nil
}

func BenchmarkReaderGetSet(b *testing.B) {
	req := []byte("*2\r\n$3\r\nGET\r\n$16\r\nkey:000000000001\r\n*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000001\r\n$32\r\n" + strings.Repeat("x", 32) + "\r\n")
	rd := NewReader(&loopReader{data: req}, 16<<10, testLimits)
	var out []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		args, ok, err := rd.Next()
		if err != nil {
			b.Fatal(err)
		}
		if !ok {
			if err := rd.Fill(); err != nil {
				b.Fatal(err)
			}
			i--
			continue
		}
		out = out[:0]
		if len(args) == 2 {
			out = AppendBulk(out, args[1])
		} else {
			out = AppendSimple(out, "OK")
		}
	}
}

// TestReaderLetsLargeArgumentListsGo: a command with many arguments (an
// MSET of thousands of keys) gets its slots, and the Reader lets them go
// once the next command is asked for, keeping at most keepArgs.
func TestReaderLetsLargeArgumentListsGo(t *testing.T) {
	const n = 5000
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", n)
	for range n {
		b.WriteString("$0\r\n\r\n")
	}
	b.WriteString("*1\r\n$4\r\nPING\r\n")
	rd := NewReader(strings.NewReader(b.String()), 64, Limits{MaxBulk: 1 << 10, MaxArgs: n, MaxRequest: 1 << 20})
	var got []int
	for range 1000 {
		args, ok, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			if err := rd.Fill(); err != nil {
				break
			}
			continue
		}
		got = append(got, len(args))
		if len(got) == 2 {
			if cap(rd.args) > keepArgs {
				t.Fatalf("after a %d-argument command the reader keeps %d slots", n, cap(rd.args))
			}
			break
		}
	}
	if len(got) != 2 || got[0] != n || got[1] != 1 {
		t.Fatalf("commands parsed: %v", got)
	}
}
