package watch

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kvdb/kvdb/internal/engine"
)

// gatedSender is a stream's client that takes control answers at once but
// does not read events until its gate opens: its first events response
// blocks the sender.
type gatedSender struct {
	gate    chan struct{}
	blocked chan struct{} // closed when the sender first blocks

	mu     sync.Mutex
	once   bool
	events map[int64]int // events received per watch id
}

func newGatedSender() *gatedSender {
	return &gatedSender{gate: make(chan struct{}), blocked: make(chan struct{}), events: map[int64]int{}}
}

func (g *gatedSender) send(r *Response) error {
	if len(r.Events) == 0 {
		return nil
	}
	g.mu.Lock()
	if !g.once {
		g.once = true
		close(g.blocked)
	}
	g.mu.Unlock()
	<-g.gate
	g.mu.Lock()
	g.events[r.WatchID] += len(r.Events)
	g.mu.Unlock()
	return nil
}

func (g *gatedSender) received() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, c := range g.events {
		n += c
	}
	return n
}

// TestCatchUpHeldBytes starts watchers far in the past on streams whose
// clients do not read, and checks what their senders hold: each stream
// about one batch (WatcherBufferBytes, or one revision if larger), counted
// in BufferedBytes, and every stream together no more than
// MaxBufferedBytes allows; once the clients read, every event arrives and
// nothing stays counted.
func TestCatchUpHeldBytes(t *testing.T) {
	const (
		revisions = 40
		perRev    = 10 // keys per revision
		watchers  = 30 // per stream, each from revision 1 over every key
		batch     = 4 << 10
	)
	tests := []struct {
		name        string
		streams     int
		maxBuffered int64
		wantStarved bool // some streams wait for room
	}{
		{name: "one stream", streams: 1, maxBuffered: 1 << 30},
		{name: "streams share the node's bound", streams: 8, maxBuffered: 2 * batch, wantStarved: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := engine.New()
			hub := NewHub(Config{WatcherBufferBytes: batch, MaxBufferedBytes: tt.maxBuffered}, 0)
			st.SetObserver(hub)
			var idx uint64
			value := make([]byte, 100)
			for r := range revisions {
				ops := make([]engine.Op, perRev)
				for k := range ops {
					ops[k] = engine.Op{Type: engine.OpPut, Key: []byte(fmt.Sprintf("k/%02d/%02d", r, k)), Value: value}
				}
				idx++
				st.Apply(idx, ops)
			}
			hub.mu.Lock()
			var revBytes int64 // the largest revision's size
			for i := 0; i < hub.hist.n; {
				var size int64
				j := i
				for ; j < hub.hist.n && hub.hist.at(j).Revision() == hub.hist.at(i).Revision(); j++ {
					size += hub.hist.at(j).Size()
				}
				revBytes, i = max(revBytes, size), j
			}
			hub.mu.Unlock()

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			senders := make([]*gatedSender, tt.streams)
			streams := make([]*Stream, tt.streams)
			done := make(chan error, tt.streams)
			for i := range senders {
				senders[i] = newGatedSender()
				streams[i] = hub.NewStream(StreamConfig{}, senders[i].send)
				for range watchers {
					if _, err := streams[i].Create(CreateRequest{Key: []byte{0}, End: []byte{0}, StartRevision: 1}); err != nil {
						t.Fatal(err)
					}
				}
				go func() { done <- streams[i].Run(ctx) }()
			}
			// Wait until every sender is blocked in a send or waits for
			// room.
			starved := 0
			for deadline := time.Now().Add(10 * time.Second); ; {
				blocked := 0
				for _, g := range senders {
					select {
					case <-g.blocked:
						blocked++
					default:
					}
				}
				hub.mu.Lock()
				starved = len(hub.starved)
				hub.mu.Unlock()
				if blocked+starved == tt.streams {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d senders blocked, %d waiting for room, of %d", blocked, starved, tt.streams)
				}
				time.Sleep(time.Millisecond)
			}
			held := hub.Stats().BufferedBytes
			perStream := batch + revBytes
			if held <= 0 {
				t.Errorf("the blocked senders hold %d bytes by BufferedBytes: what they took is not counted", held)
			}
			if limit := int64(tt.streams-starved) * perStream; held > limit {
				t.Errorf("%d senders hold %d bytes, over %d (one batch each)", tt.streams-starved, held, limit)
			}
			if limit := tt.maxBuffered + perStream; held > limit {
				t.Errorf("the senders hold %d bytes, over %d (the node's bound and one batch)", held, limit)
			}
			if (starved > 0) != tt.wantStarved {
				t.Errorf("%d streams wait for room, want some: %v", starved, tt.wantStarved)
			}
			// The clients read: every event arrives.
			for _, g := range senders {
				close(g.gate)
			}
			want := watchers * revisions * perRev
			for i, g := range senders {
				for deadline := time.Now().Add(20 * time.Second); g.received() < want; {
					if time.Now().After(deadline) {
						t.Fatalf("stream %d: %d events of %d", i, g.received(), want)
					}
					time.Sleep(time.Millisecond)
				}
				for id, n := range g.events {
					if n != revisions*perRev {
						t.Errorf("stream %d watcher %d: %d events, want %d", i, id, n, revisions*perRev)
					}
				}
			}
			cancel()
			for range streams {
				<-done
			}
			if st := hub.Stats(); st.BufferedBytes != 0 || st.Watchers != 0 {
				t.Errorf("after every stream ended: %+v", st)
			}
		})
	}
}
