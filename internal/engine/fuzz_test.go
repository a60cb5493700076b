package engine

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzRestore feeds arbitrary streams to the snapshot decoder. It must never
// panic; failures must wrap ErrCorruptSnapshot and leave the store as it
// was; successes must yield an internally consistent store that re-encodes
// to exactly the input (the format is canonical).
func FuzzRestore(f *testing.F) {
	a := newApplier()
	a.apply(f, put("a", "1"))
	a.apply(f, put("b", "22"), put("c", "333"), put("a", "x"))
	a.apply(f, del("b"))
	f.Add(snapshotBytes(f, a.Store))
	f.Add(snapshotBytes(f, New()))
	f.Add(snapshotBytes(f, populate(f, 20).Store))
	f.Add([]byte("KVDBSNAP"))
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
		if out := snapshotBytes(t, s); !bytes.Equal(out, data) {
			t.Fatal("re-encoding differs from accepted input")
		}
	})
}
