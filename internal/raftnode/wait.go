package raftnode

import (
	"sync"
	"sync/atomic"
)

// result is what a proposer receives: the state machine's answer or an error.
type result struct {
	val any
	err error
}

// waitShards spreads the waiter map over several locks so concurrent
// proposers and the apply loop rarely contend.
const waitShards = 16

// waitRegistry maps request ids to the channel of the proposer waiting for
// that entry to apply (etcd's pkg/wait). Safe for concurrent use.
type waitRegistry struct {
	shards [waitShards]struct {
		mu sync.Mutex
		m  map[uint64]chan result
	}
	pending atomic.Int64
}

func newWaitRegistry() *waitRegistry {
	w := &waitRegistry{}
	for i := range w.shards {
		w.shards[i].m = make(map[uint64]chan result)
	}
	return w
}

func (w *waitRegistry) register(id uint64) chan result {
	ch := make(chan result, 1)
	s := &w.shards[id%waitShards]
	s.mu.Lock()
	s.m[id] = ch
	s.mu.Unlock()
	w.pending.Add(1)
	return ch
}

// trigger completes the waiter for id, if any. Entries proposed by other
// nodes have no waiter here, which is the common case on a follower.
func (w *waitRegistry) trigger(id uint64, r result) {
	s := &w.shards[id%waitShards]
	s.mu.Lock()
	ch, ok := s.m[id]
	if ok {
		delete(s.m, id)
	}
	s.mu.Unlock()
	if ok {
		w.pending.Add(-1)
		ch <- r
	}
}

// cancel forgets a waiter whose proposer gave up.
func (w *waitRegistry) cancel(id uint64) {
	s := &w.shards[id%waitShards]
	s.mu.Lock()
	_, ok := s.m[id]
	delete(s.m, id)
	s.mu.Unlock()
	if ok {
		w.pending.Add(-1)
	}
}

// failAll completes every waiter with err; used when the node stops.
func (w *waitRegistry) failAll(err error) {
	for i := range w.shards {
		s := &w.shards[i]
		s.mu.Lock()
		for id, ch := range s.m {
			delete(s.m, id)
			w.pending.Add(-1)
			ch <- result{err: err}
		}
		s.mu.Unlock()
	}
}

// appliedWaiters lets readers wait until the apply loop passes an index.
type appliedWaiters struct {
	applied atomic.Uint64
	mu      sync.Mutex
	waiters []appliedWaiter
}

type appliedWaiter struct {
	index uint64
	ch    chan struct{}
}

// wait returns a channel closed once applied >= index, or nil when it
// already is.
func (a *appliedWaiters) wait(index uint64) <-chan struct{} {
	if a.applied.Load() >= index {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.applied.Load() >= index {
		return nil
	}
	ch := make(chan struct{})
	a.waiters = append(a.waiters, appliedWaiter{index: index, ch: ch})
	return ch
}

func (a *appliedWaiters) advance(index uint64) {
	a.applied.Store(index)
	a.mu.Lock()
	kept := a.waiters[:0]
	for _, w := range a.waiters {
		if w.index <= index {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	clear(a.waiters[len(kept):])
	a.waiters = kept
	a.mu.Unlock()
}
