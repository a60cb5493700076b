package fsm

import (
	"errors"
	"math"
	"testing"

	"github.com/kvdb/kvdb/internal/command"
	"github.com/kvdb/kvdb/internal/engine"
)

func TestApplyRMW(t *testing.T) {
	store := engine.New()
	f := New(store, nil, nil)
	index := uint64(0)
	apply := func(r command.RMW) Result {
		t.Helper()
		data, err := command.EncodeRMW(&r)
		if err != nil {
			t.Fatal(err)
		}
		index++
		return f.Apply(index, data).(Result)
	}
	put := func(k, v string) {
		index++
		f.Apply(index, command.EncodePut([]byte(k), []byte(v), false))
	}
	value := func(k string) string {
		kv, ok := store.Get([]byte(k))
		if !ok {
			return "<absent>"
		}
		return string(kv.Value)
	}
	k := []byte("n")

	if r := apply(command.RMW{Op: command.RMWIncrBy, Key: k, Delta: 5}); r.Err != nil || r.RMW.N != 5 || value("n") != "5" {
		t.Fatalf("incr absent: %+v %q", r, value("n"))
	}
	if r := apply(command.RMW{Op: command.RMWIncrBy, Key: k, Delta: -7}); r.Err != nil || r.RMW.N != -2 || value("n") != "-2" {
		t.Fatalf("decr: %+v", r)
	}
	put("n", "9223372036854775807")
	rev := store.Revision()
	if r := apply(command.RMW{Op: command.RMWIncrBy, Key: k, Delta: 1}); !errors.Is(r.Err, command.ErrOverflow) || store.Revision() != rev {
		t.Fatalf("overflow: %+v", r)
	}
	for _, bad := range []string{"", "+1", "01", " 1", "1 ", "abc", "-0", "99999999999999999999"} {
		put("n", bad)
		if r := apply(command.RMW{Op: command.RMWIncrBy, Key: k, Delta: 1}); !errors.Is(r.Err, command.ErrNotInteger) {
			t.Fatalf("incr of %q: %+v", bad, r)
		}
	}
	put("f", "10.50")
	if r := apply(command.RMW{Op: command.RMWIncrByFloat, Key: []byte("f"), FloatDelta: 0.1}); r.Err != nil || string(r.RMW.Value) != "10.6" {
		t.Fatalf("incrbyfloat: %+v %q", r, r.RMW.Value)
	}
	put("f", "5.0e3")
	if r := apply(command.RMW{Op: command.RMWIncrByFloat, Key: []byte("f"), FloatDelta: 200}); r.Err != nil || value("f") != "5200" {
		t.Fatalf("incrbyfloat exp: %+v", r)
	}
	put("f", "1.7e308")
	if r := apply(command.RMW{Op: command.RMWIncrByFloat, Key: []byte("f"), FloatDelta: 1.7e308}); !errors.Is(r.Err, command.ErrNaN) {
		t.Fatalf("inf: %+v", r)
	}
	if _, err := command.EncodeRMW(&command.RMW{Op: command.RMWIncrByFloat, Key: k, FloatDelta: math.NaN()}); err != nil {
		t.Fatal(err)
	}
	if r := apply(command.RMW{Op: command.RMWAppend, Key: []byte("s"), Value: []byte("Hello"), MaxValueSize: 8}); r.Err != nil || r.RMW.N != 5 {
		t.Fatalf("append: %+v", r)
	}
	if r := apply(command.RMW{Op: command.RMWAppend, Key: []byte("s"), Value: []byte(" World"), MaxValueSize: 8}); !errors.Is(r.Err, command.ErrValueTooLong) || value("s") != "Hello" {
		t.Fatalf("append over max: %+v", r)
	}
	if r := apply(command.RMW{Op: command.RMWSetRange, Key: []byte("s"), Offset: 7, Value: []byte("!")}); r.Err != nil || r.RMW.N != 8 || value("s") != "Hello\x00\x00!" {
		t.Fatalf("setrange: %+v %q", r, value("s"))
	}
	if r := apply(command.RMW{Op: command.RMWSetRange, Key: []byte("none"), Offset: 3}); r.Err != nil || r.RMW.N != 0 || value("none") != "<absent>" {
		t.Fatalf("setrange empty: %+v", r)
	}
	if r := apply(command.RMW{Op: command.RMWRename, Key: []byte("s"), Dest: []byte("t")}); r.Err != nil || value("s") != "<absent>" || value("t") != "Hello\x00\x00!" {
		t.Fatalf("rename: %+v", r)
	}
	if r := apply(command.RMW{Op: command.RMWRename, Key: []byte("s"), Dest: []byte("t")}); !errors.Is(r.Err, command.ErrNoSuchKey) {
		t.Fatalf("rename missing: %+v", r)
	}
	put("u", "1")
	if r := apply(command.RMW{Op: command.RMWRename, Key: []byte("t"), Dest: []byte("u"), OnlyIfAbsent: true}); r.Err != nil || r.RMW.N != 0 || value("u") != "1" {
		t.Fatalf("renamenx: %+v", r)
	}
	// Replayed entries change nothing.
	data, _ := command.EncodeRMW(&command.RMW{Op: command.RMWIncrBy, Key: []byte("x"), Delta: 1})
	before := store.Revision()
	f.Apply(1, data)
	if store.Revision() != before || value("x") != "<absent>" {
		t.Fatal("a replayed read-modify-write was applied")
	}
}

func FuzzParseInt(f *testing.F) {
	for _, s := range []string{"0", "-1", "123", "+1", "01", "9223372036854775807", "-9223372036854775808", "9223372036854775808"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := ParseInt([]byte(s))
		if ok {
			if back := string(FormatInt(n)); back != s {
				t.Fatalf("%q parsed as %d, which prints as %q", s, n, back)
			}
		}
	})
}

// TestApplyMultiWithRMW: read-modify-writes coalesced with puts see the
// commands before them, each at its own revision; a refused one changes
// nothing and leaves the others alone.
func TestApplyMultiWithRMW(t *testing.T) {
	store := engine.New()
	f := New(store, nil, nil)
	rmw := func(r command.RMW) []byte {
		b, err := command.EncodeRMW(&r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	entry := command.EncodeMulti([][]byte{
		command.EncodePut([]byte("n"), []byte("5"), false),
		rmw(command.RMW{Op: command.RMWIncrBy, Key: []byte("n"), Delta: 2}),
		command.EncodePut([]byte("s"), []byte("x"), false),
		rmw(command.RMW{Op: command.RMWIncrBy, Key: []byte("s"), Delta: 1}),
		rmw(command.RMW{Op: command.RMWAppend, Key: []byte("s"), Value: []byte("y")}),
	}, ident)
	r := f.Apply(1, entry).(Result)
	if len(r.Multi) != 5 || r.Multi[1].RMW.N != 7 || r.Multi[1].Res.Revision != 2 ||
		!errors.Is(r.Multi[3].Err, command.ErrNotInteger) || r.Multi[3].Res.Revision != 3 ||
		r.Multi[4].RMW.N != 2 || r.Multi[4].Res.Revision != 4 {
		t.Fatalf("%+v", r)
	}
	if kv, _ := store.Get([]byte("s")); string(kv.Value) != "xy" {
		t.Fatalf("s = %q", kv.Value)
	}
	if r := f.Apply(1, entry).(Result); store.Revision() != 4 || len(r.Multi) != 5 {
		t.Fatalf("replay changed the store: %+v", r)
	}
}
