package engine

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzRestore feeds arbitrary streams to the snapshot decoder. It must never
// panic; failures must wrap ErrCorruptSnapshot and leave the store as it
// was; successes must yield an internally consistent store that re-encodes
// to exactly the input (each format version is canonical: a format-1 input
// is compared with the format-1 encoding of what it restored).
func FuzzRestore(f *testing.F) {
	a := newApplier()
	a.apply(f, put("a", "1"))
	a.apply(f, put("b", "22"), put("c", "333"), put("a", "x"))
	a.apply(f, del("b"))
	f.Add(snapshotBytes(f, a.Store))
	f.Add(snapshotBytes(f, New()))
	f.Add(snapshotBytes(f, populate(f, 20).Store))
	f.Add([]byte("KVDBSNAP"))
	ttl := newApplier()
	ttl.grant(f, 4, 30)
	ttl.apply(f, putTTL("d", "1", 1_700_000_000_000), putLease("l", "2", 4), put("p", "3"))
	f.Add(snapshotBytes(f, ttl.Store))
	v1 := newApplier()
	v1.apply(f, put("a", "1"), put("b", "2"))
	f.Add(formatV1(f, v1.Store))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := New()
		s.Apply(1, []Op{put("pre", "existing")})
		before := s.Hash()
		err := s.Restore(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("error not wrapped: %v", err)
			}
			if s.Hash() != before || s.AppliedIndex() != 1 || s.Len() != 1 {
				t.Fatal("failed Restore changed the store")
			}
			return
		}
		if msg := s.checkConsistency(); msg != "" {
			t.Fatalf("inconsistent store after Restore: %s", msg)
		}
		out := snapshotBytes(t, s)
		if len(data) > len(snapshotMagic)+1 && data[len(snapshotMagic)+1] == byte(snapshotVersionV1) {
			out = formatV1(t, s)
		}
		if !bytes.Equal(out, data) {
			t.Fatal("re-encoding differs from accepted input")
		}
	})
}
