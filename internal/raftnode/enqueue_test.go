package raftnode

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gatedSM applies like logSM but, while held, makes Apply of a command
// wait until the gate is released.
type gatedSM struct {
	logSM
	mu   sync.Mutex
	gate chan struct{} // nil: open
}

func (s *gatedSM) hold() {
	s.mu.Lock()
	s.gate = make(chan struct{})
	s.mu.Unlock()
}

func (s *gatedSM) release() {
	s.mu.Lock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
	s.mu.Unlock()
}

func (s *gatedSM) Apply(index uint64, data []byte) any {
	s.mu.Lock()
	g := s.gate
	s.mu.Unlock()
	if g != nil && data != nil {
		<-g
	}
	return s.logSM.Apply(index, data)
}

// startGated starts a lone voter over a gatedSM and waits for it to lead;
// ctx bounds the test.
func startGated(t *testing.T) (*Node, *gatedSM, context.Context) {
	t.Helper()
	sm := &gatedSM{}
	n, err := Start(Config{ID: 1, Name: "n1", Address: "mem:n1", ClusterID: 5, DataDir: t.TempDir(),
		TickInterval: 5 * time.Millisecond, Logger: quietLogger()}, sm)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	for n.Status().Leader != 1 {
		if ctx.Err() != nil {
			t.Fatal("single voter did not elect itself")
		}
		time.Sleep(time.Millisecond)
	}
	return n, sm, ctx
}

// callbackRecorder records every call of an EnqueueFunc callback.
type callbackRecorder struct {
	calls atomic.Int32
	once  chan struct{}
	val   any
	err   error
}

func newRecorder() *callbackRecorder { return &callbackRecorder{once: make(chan struct{})} }

func (r *callbackRecorder) done(val any, err error) {
	if r.calls.Add(1) == 1 {
		r.val, r.err = val, err
		close(r.once)
	}
}

func (r *callbackRecorder) wait(t *testing.T) {
	t.Helper()
	select {
	case <-r.once:
	case <-time.After(10 * time.Second):
		t.Fatal("the callback was never called")
	}
}

// TestEnqueueFunc: the callback gets the applied result once; one whose
// timeout passes first gets DeadlineExceeded once, even when the entry is
// applied later; a dropped proposal's callback gets the error; after Stop
// EnqueueFunc fails and never calls back.
func TestEnqueueFunc(t *testing.T) {
	n, sm, ctx := startGated(t)

	short := newRecorder()
	if err := n.EnqueueFunc([]byte("x"), time.Second, short.done); err == nil {
		t.Fatal("a proposal without room for its header was taken")
	}

	applied := newRecorder()
	if err := n.EnqueueFunc(headed("a"), 5*time.Second, applied.done); err != nil {
		t.Fatal(err)
	}
	applied.wait(t)
	if applied.err != nil || applied.val != 1 {
		t.Fatalf("applied callback got (%v, %v), want (1, nil)", applied.val, applied.err)
	}

	sm.hold()
	late := newRecorder()
	if err := n.EnqueueFunc(headed("b"), 100*time.Millisecond, late.done); err != nil {
		t.Fatal(err)
	}
	late.wait(t)
	if !errors.Is(late.err, context.DeadlineExceeded) {
		t.Fatalf("timed-out callback got (%v, %v), want DeadlineExceeded", late.val, late.err)
	}
	sm.release()
	if _, err := n.Propose(ctx, []byte("c")); err != nil {
		t.Fatal(err)
	}
	if got := sm.commands(); len(got) != 3 || got[1] != "b" {
		t.Fatalf("commands %q, want a, b, c", got)
	}
	if c := late.calls.Load() + applied.calls.Load(); c != 2 {
		t.Fatalf("callbacks called %d times in all, want once each", c)
	}
	if p := n.waits.pending.Load(); p != 0 {
		t.Fatalf("%d waiters left registered", p)
	}

	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := newRecorder()
	if err := n.EnqueueFunc(headed("d"), time.Second, stopped.done); err == nil {
		t.Fatal("EnqueueFunc on a stopped node succeeded")
	}
	time.Sleep(2 * expireInterval)
	if c := stopped.calls.Load() + short.calls.Load(); c != 0 {
		t.Fatalf("a refused proposal's callback was called %d times", c)
	}
}

// TestEnqueueFuncDropped: without a leader raft drops the proposal and the
// callback hears so at once, from the raft loop.
func TestEnqueueFuncDropped(t *testing.T) {
	net := NewMemNetwork(1)
	defer net.Close()
	members := []Member{{ID: 1, Name: "a", Address: "mem:a"}, {ID: 2, Name: "b", Address: "mem:b"}}
	n, err := Start(Config{ID: 1, Name: "a", Address: "mem:a", ClusterID: 6, DataDir: t.TempDir(),
		Peers: members, Transport: net.Transport(1), TickInterval: 5 * time.Millisecond, Logger: quietLogger()}, &logSM{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	r := newRecorder()
	if err := n.EnqueueFunc(headed("x"), time.Minute, r.done); err != nil {
		t.Fatal(err)
	}
	r.wait(t)
	if !errors.Is(r.err, ErrProposalDropped) {
		t.Fatalf("callback got (%v, %v), want ErrProposalDropped", r.val, r.err)
	}
}

// TestEnqueueFuncAcrossStop: proposals racing the node's stop each get
// exactly one answer when EnqueueFunc accepted them and none when it
// refused them.
func TestEnqueueFuncAcrossStop(t *testing.T) {
	for round := range 5 {
		n := startSingle(t, t.TempDir(), &logSM{}, nil)
		var (
			mu       sync.Mutex
			accepted []*callbackRecorder
			refused  []*callbackRecorder
			wg       sync.WaitGroup
		)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 2000; i++ {
					r := newRecorder()
					err := n.EnqueueFunc(headed("x"), time.Minute, r.done)
					mu.Lock()
					if err == nil {
						accepted = append(accepted, r)
					} else {
						refused = append(refused, r)
					}
					mu.Unlock()
					if errors.Is(err, ErrStopped) {
						return
					}
				}
			}()
		}
		time.Sleep(time.Duration(round) * time.Millisecond)
		_ = n.Stop()
		wg.Wait()
		for _, r := range accepted {
			r.wait(t)
		}
		time.Sleep(2 * expireInterval)
		for i, r := range accepted {
			if c := r.calls.Load(); c != 1 {
				t.Fatalf("round %d: accepted proposal %d answered %d times", round, i, c)
			}
		}
		for i, r := range refused {
			if c := r.calls.Load(); c != 0 {
				t.Fatalf("round %d: refused proposal %d answered %d times", round, i, c)
			}
		}
	}
}

// headed is s behind the room EnqueueFunc wants for its header.
func headed(s string) []byte { return append(make([]byte, ProposalHeader), s...) }

// TestReadIndexWithin: a read waits for the apply loop to reach the read
// index and gives up with DeadlineExceeded once its timeout has passed;
// once the apply loop catches up reads are answered again.
func TestReadIndexWithin(t *testing.T) {
	n, sm, ctx := startGated(t)
	if err := n.ReadIndexWithin(context.Background(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	sm.hold()
	stuck := newRecorder()
	if err := n.EnqueueFunc(headed("held"), time.Minute, stuck.done); err != nil {
		t.Fatal(err)
	}
	for n.Status().Commit <= n.Status().Applied {
		if ctx.Err() != nil {
			t.Fatal("the held entry never committed")
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if err := n.ReadIndexWithin(context.Background(), 100*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read behind a held apply: %v, want DeadlineExceeded", err)
	}
	if waited := time.Since(start); waited < 100*time.Millisecond {
		t.Fatalf("gave up after %v, before its 100ms timeout", waited)
	}
	sm.release()
	stuck.wait(t)
	if err := n.ReadIndexWithin(context.Background(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestWithdrawAfterTheNodeFailedTheWaiter: a proposal the raft loop did
// not take gets its waiter back; when the node's stop had already failed
// a callback waiter, the callback has had its one answer and the proposal
// counts as enqueued, so the caller does not answer it a second time.
func TestWithdrawAfterTheNodeFailedTheWaiter(t *testing.T) {
	n, _, _ := startGated(t)
	r := newRecorder()
	n.waits.add(900, waiter{fn: r.done, deadline: time.Now().Add(time.Minute).UnixNano()})
	n.waits.failAll(ErrStopped)
	if id, err := n.withdraw(900, waiter{fn: r.done}, ErrOverloaded); err != nil || id != 900 {
		t.Fatalf("withdraw of an answered callback = %d, %v; want 900, nil", id, err)
	}
	if c := r.calls.Load(); c != 1 || !errors.Is(r.err, ErrStopped) {
		t.Fatalf("callback called %d times (%v), want once with ErrStopped", c, r.err)
	}

	// Not answered yet: taken back, the refusal returned, no call.
	r2 := newRecorder()
	n.waits.add(901, waiter{fn: r2.done, deadline: time.Now().Add(time.Minute).UnixNano()})
	if _, err := n.withdraw(901, waiter{fn: r2.done}, ErrOverloaded); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("withdraw = %v, want ErrOverloaded", err)
	}
	if c := r2.calls.Load(); c != 0 {
		t.Fatalf("a refused proposal's callback was called %d times", c)
	}
	if p := n.waits.pending.Load(); p != 0 {
		t.Fatalf("%d waiters left registered", p)
	}
}
