package watch

import (
	"slices"
	"testing"

	"github.com/kvdb/kvdb/internal/engine"
)

// TestRangeWatchers checks the index of range watchers (those neither one
// key nor a prefix): every watcher is offered exactly the changes its range
// holds, with ranges open to the last key, overlapping, nested and shared
// by several watchers, and none once it is canceled.
func TestRangeWatchers(t *testing.T) {
	st := engine.New()
	hub := NewHub(Config{}, 0)
	st.SetObserver(hub)
	s := hub.NewStream(StreamConfig{}, func(*Response) error { return nil })
	ranges := []struct {
		name, key, end string
		cancel         bool // canceled before the second round of writes
	}{
		{name: "every key", key: "", end: "\x00", cancel: true},
		{name: "every key again", key: "", end: "\x00"},
		{name: "every key from \\x00", key: "\x00", end: "\x00"},
		{name: "from b", key: "b", end: "\x00"},
		{name: "b to bz", key: "b", end: "bz"},
		{name: "b to bz again", key: "b", end: "bz", cancel: true},
		{name: "a to z, holding b to bz", key: "a", end: "z", cancel: true},
		{name: "b/1 to b/5, inside b to bz", key: "b/1", end: "b/5"},
		{name: "b/3 to c/1, across b to bz", key: "b/3", end: "c/1"},
		{name: "prefix c, beside the ranges", key: "c", end: "d"},
		{name: "one key as a range", key: "zz", end: "zz\x00"},
		{name: "empty", key: "d", end: "c"},
	}
	keys := []string{"\x00", "\x01", "a", "a/1", "b", "b/1", "b/3", "b/5", "bz", "c", "c/1", "d", "z", "zz", "zz\x00"}
	ids := make([]int64, len(ranges))
	for i, r := range ranges {
		id, err := s.Create(CreateRequest{Key: []byte(r.key), End: []byte(r.end)})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	// Three watchers share every key, two share b to bz, and c to d is a
	// prefix.
	if n := hub.ranges.Len(); n != len(ranges)-4 {
		t.Errorf("%d ranges indexed, want %d", n, len(ranges)-4)
	}
	var index uint64
	writeAll := func() {
		for _, k := range keys {
			put(t, st, &index, k)
		}
	}
	// check compares each watcher's buffer with the keys its range holds,
	// and empties it.
	check := func(round string) {
		t.Helper()
		hub.mu.Lock()
		defer hub.mu.Unlock()
		for i, r := range ranges {
			w := s.watchers[ids[i]]
			var want, got []string
			if w != nil {
				for _, k := range keys {
					if w.matches(k) {
						want = append(want, k)
					}
				}
				for _, ev := range w.buf {
					got = append(got, ev.KeyString())
				}
				hub.buffered -= w.bufBytes
				w.buf, w.bufBytes = nil, 0
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s: %s: got %q, want %q", round, r.name, got, want)
			}
		}
	}
	writeAll()
	check("first round")
	for i, r := range ranges {
		if r.cancel && !s.Cancel(ids[i]) {
			t.Fatalf("cancel %s", r.name)
		}
	}
	if n := hub.ranges.Len(); n != len(ranges)-5 {
		t.Errorf("%d ranges indexed after the cancels, want %d", n, len(ranges)-5)
	}
	writeAll()
	check("after the cancels")
	s.Close()
	if n, st := hub.ranges.Len(), hub.Stats(); n != 0 || st.Watchers != 0 || st.BufferedBytes != 0 {
		t.Errorf("after the stream closed: %d ranges indexed, %+v", n, st)
	}
}
