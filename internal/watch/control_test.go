package watch

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestControlQueueBound sends create and cancel requests, as a stream's
// reader does, to a stream whose client reads nothing: the queue of
// answers stops at MaxControl and the reader waits, without holding up
// another stream, until the sender drains the queue, the stream closes or
// the reader's context ends.
func TestControlQueueBound(t *testing.T) {
	const (
		maxControl = 8
		requests   = 1000 // create/cancel pairs
	)
	tests := []struct {
		name    string
		release func(s *Stream, gate chan struct{}, cancelReader context.CancelFunc)
		wantErr error // the reader's error; nil: it applies every request
	}{
		{name: "the client reads", release: func(_ *Stream, gate chan struct{}, _ context.CancelFunc) { close(gate) }},
		{name: "the stream closes", wantErr: ErrStreamClosed, release: func(s *Stream, gate chan struct{}, _ context.CancelFunc) {
			s.Close()
			close(gate)
		}},
		{name: "the reader's context ends", wantErr: context.Canceled, release: func(_ *Stream, gate chan struct{}, cancelReader context.CancelFunc) {
			cancelReader()
			close(gate)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := NewHub(Config{}, 0)
			gate := make(chan struct{})
			var mu sync.Mutex
			var created, canceled int
			s := hub.NewStream(StreamConfig{MaxControl: maxControl}, func(r *Response) error {
				<-gate
				mu.Lock()
				defer mu.Unlock()
				if r.Created {
					created++
				}
				if r.Canceled {
					canceled++
				}
				return nil
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			runDone := make(chan error, 1)
			go func() { runDone <- s.Run(ctx) }()
			// Another stream, whose client reads, is not held up.
			other := newCollector()
			os := hub.NewStream(StreamConfig{MaxControl: maxControl}, other.send)
			go os.Run(ctx)

			readerCtx, cancelReader := context.WithCancel(ctx)
			defer cancelReader()
			readerDone := make(chan error, 1)
			go func() {
				readerDone <- func() error {
					for range requests {
						if err := s.WaitControlRoom(readerCtx); err != nil {
							return err
						}
						id, err := s.Create(CreateRequest{Key: []byte("k")})
						if err != nil {
							return err
						}
						if err := s.WaitControlRoom(readerCtx); err != nil {
							return err
						}
						s.Cancel(id)
					}
					return nil
				}()
			}()
			// Wait until the reader waits for room (or, unbounded, ends).
			for deadline := time.Now().Add(10 * time.Second); ; {
				hub.mu.Lock()
				waiting := s.roomC != nil
				hub.mu.Unlock()
				if waiting {
					break
				}
				select {
				case err := <-readerDone:
					t.Fatalf("the reader applied every request (%v) while the client read nothing: %d answers queued", err, hub.Stats().ControlQueued)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("the reader neither waits nor ends: %d answers queued", hub.Stats().ControlQueued)
				}
				time.Sleep(time.Millisecond)
			}
			if n := hub.Stats().ControlQueued; n > maxControl {
				t.Errorf("%d answers queued, over %d", n, maxControl)
			}
			for i := range 3 * maxControl {
				if _, err := os.Create(CreateRequest{Key: []byte("other")}); err != nil {
					t.Fatal(err)
				}
				other.wait(t, i+1)
			}

			tt.release(s, gate, cancelReader)
			select {
			case err := <-readerDone:
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("reader: %v, want %v", err, tt.wantErr)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the reader still waits")
			}
			if tt.wantErr == nil {
				// The reader is done; the sender may still be sending the
				// last answers.
				for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
					mu.Lock()
					n, m := created, canceled
					mu.Unlock()
					if n == requests && m == requests {
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("%d created and %d canceled answers, want %d each", n, m, requests)
						break
					}
				}
			}
			cancel()
			<-runDone
			os.Close()
			if st := hub.Stats(); st.ControlQueued != 0 || st.Watchers != 0 {
				t.Errorf("after the streams ended: %+v", st)
			}
		})
	}
}
