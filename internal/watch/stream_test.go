package watch

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kvdb/kvdb/internal/engine"
)

// collector gathers a stream's responses.
type collector struct {
	mu    sync.Mutex
	resps []Response
	c     chan struct{}
}

func newCollector() *collector { return &collector{c: make(chan struct{}, 1024)} }

func (c *collector) send(r *Response) error {
	c.mu.Lock()
	cp := *r
	cp.Events = append([]engine.Event(nil), r.Events...)
	c.resps = append(c.resps, cp)
	c.mu.Unlock()
	c.c <- struct{}{}
	return nil
}

// wait returns once n responses arrived (bounded).
func (c *collector) wait(t *testing.T, n int) []Response {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		if len(c.resps) >= n {
			out := append([]Response(nil), c.resps...)
			c.mu.Unlock()
			return out
		}
		c.mu.Unlock()
		select {
		case <-c.c:
		case <-deadline:
			t.Fatalf("%d responses, want %d: %+v", len(c.resps), n, c.resps)
		}
	}
}

func put(t *testing.T, st *engine.Store, idx *uint64, k string) {
	t.Helper()
	*idx++
	st.Apply(*idx, []engine.Op{{Type: engine.OpPut, Key: []byte(k), Value: []byte("v")}})
}

// TestStreamControl covers one stream's requests: ids, the per-stream
// bound, a compacted start, cancel, progress, progress notifications and
// a store restored from a snapshot.
func TestStreamControl(t *testing.T) {
	st := engine.New()
	hub := NewHub(Config{HistoryRevisions: 3}, 0)
	st.SetObserver(hub)
	var idx uint64
	for range 5 {
		put(t, st, &idx, "k")
	}
	col := newCollector()
	s := hub.NewStream(StreamConfig{MaxWatchers: 2, ProgressInterval: 20 * time.Millisecond}, col.send)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	// Revisions 3..5 are held; 2 is compacted.
	if id, err := s.Create(CreateRequest{Key: []byte("k"), StartRevision: 2}); err != nil || id != 1 {
		t.Fatalf("create: %d, %v", id, err)
	}
	r := col.wait(t, 2)
	if !r[0].Created || !r[1].Canceled || r[1].CompactRevision != 3 {
		t.Fatalf("compacted start: %+v", r)
	}
	if _, err := s.Create(CreateRequest{Key: []byte("k"), WatchID: 7, StartRevision: 3, ProgressNotify: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(CreateRequest{Key: []byte("x"), WatchID: 7}); !errors.Is(err, ErrWatchIDInUse) {
		t.Errorf("id in use: %v", err)
	}
	if _, err := s.Create(CreateRequest{Key: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(CreateRequest{Key: []byte("y")}); !errors.Is(err, ErrTooManyWatch) {
		t.Errorf("third watcher: %v", err)
	}
	// Created for 7, its three past revisions, created for the third.
	r = col.wait(t, 5)
	var revs []int64
	for _, x := range r[2:] {
		for _, ev := range x.Events {
			revs = append(revs, ev.Revision())
		}
	}
	if len(revs) != 3 || revs[0] != 3 || revs[2] != 5 {
		t.Errorf("replay from 3: revisions %v", revs)
	}
	// Progress: once everything up to 5 is sent.
	s.RequestProgress()
	r = col.wait(t, 6)
	if p := r[len(r)-1]; !p.Progress || p.WatchID != -1 || p.Revision != 5 {
		t.Errorf("progress: %+v", p)
	}
	// An idle progress-notify watcher hears the revision.
	for {
		r = col.wait(t, len(r)+1)
		if p := r[len(r)-1]; p.Progress && p.WatchID == 7 && p.Revision == 5 {
			break
		}
	}
	// Cancel: a canceled answer, then nothing for that watcher.
	if !s.Cancel(7) || s.Cancel(7) {
		t.Error("cancel 7 twice: want true then false")
	}
	for {
		r = col.wait(t, len(r)+1)
		if p := r[len(r)-1]; p.Canceled && p.WatchID == 7 {
			break
		}
	}
	// A restore to revision 100: the remaining watcher (next 6) is
	// canceled with the new oldest revision.
	hub.Reset(100)
	for {
		r = col.wait(t, len(r)+1)
		if p := r[len(r)-1]; p.Canceled {
			if p.CompactRevision != 101 {
				t.Errorf("after a restore: %+v", p)
			}
			break
		}
	}
	cancel()
	<-done
	if st := hub.Stats(); st.Watchers != 0 || st.Streams != 0 || st.BufferedBytes != 0 {
		t.Errorf("after the stream ended: %+v", st)
	}
}
