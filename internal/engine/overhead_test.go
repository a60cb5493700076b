package engine

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestEntryOverhead measures the real per-entry heap cost and checks that
// EntryOverhead is in the right ballpark. The measured figure depends on
// where the map is in its growth cycle, so the tolerance is wide; the test
// exists to document the measurement and catch gross drift (e.g. a second
// index being added without updating the constant).
func TestEntryOverhead(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 100k entries")
	}
	const n = 100_000
	keys := make([][]byte, n)
	val := make([]byte, 16)
	for i := range keys {
		keys[i] = make([]byte, 16)
		binary.BigEndian.PutUint64(keys[i][8:], uint64(i)*0x9E3779B97F4A7C15)
	}
	ops := make([]Op, 1)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := New()
	for i, k := range keys {
		ops[0] = Op{Type: OpPut, Key: k, Value: val}
		s.Apply(uint64(i+1), ops)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	// keys must still be live at the second reading or their release would
	// be subtracted from the store's cost.
	runtime.KeepAlive(keys)
	runtime.KeepAlive(s)

	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	data := int64(n * (16 + 16))
	perEntry := float64(heap-data) / n
	t.Logf("measured overhead: %.1f bytes/entry (heap growth %d B for %d entries, %d B key+value); EntryOverhead=%d",
		perEntry, heap, n, data, EntryOverhead)
	if perEntry < EntryOverhead/2 || perEntry > EntryOverhead*2 {
		t.Errorf("measured %.1f B/entry, EntryOverhead=%d is off by more than 2x", perEntry, EntryOverhead)
	}
	// MemoryUsage counts each entry's allocation rounded to 16 bytes plus
	// IndexOverhead: within 15% of the measured heap.
	if got := float64(s.MemoryUsage()) / n; got < 0.85*float64(heap)/n || got > 1.15*float64(heap)/n {
		t.Errorf("MemoryUsage %.1f B/entry, heap %.1f B/entry", got, float64(heap)/n)
	}
}

// TestMemoryUsageDocumented: the README's worked example of what a key
// costs is what the store counts.
func TestMemoryUsageDocumented(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(readme)), " ") // line breaks as spaces
	s := New()
	s.Apply(1, []Op{{Type: OpPut, Key: []byte("abc"), Value: []byte("12345")}})
	want := fmt.Sprintf("`put abc 12345` counts %d bytes", s.MemoryUsage())
	if !strings.Contains(text, want) {
		t.Fatalf("README.md does not say %q (the store counts %d bytes)", want, s.MemoryUsage())
	}
	if !strings.Contains(text, fmt.Sprintf("about %d bytes", EntryOverhead)) {
		t.Fatalf("README.md does not give EntryOverhead (%d bytes)", EntryOverhead)
	}
}
