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

// waitRegistry maps request ids to whoever waits for that entry to apply
// (etcd's pkg/wait): a proposer's channel, or a callback with a deadline.
// Safe for concurrent use.
type waitRegistry struct {
	shards [waitShards]struct {
		mu sync.Mutex
		m  map[uint64]waiter
	}
	pending atomic.Int64
	// callbacks counts the waiters that are callbacks, so expire has
	// nothing to scan while there are none.
	callbacks atomic.Int64
	// failed hears every error a callback is given (the proposal-failure
	// metric; a channel's proposer counts its own in Proposal.Wait).
	failed func(error)
}

// waiter is one entry's waiter: ch, or fn with its deadline (unix nanos).
type waiter struct {
	ch       chan result
	fn       func(val any, err error)
	deadline int64
}

func newWaitRegistry(failed func(error)) *waitRegistry {
	w := &waitRegistry{failed: failed}
	for i := range w.shards {
		w.shards[i].m = make(map[uint64]waiter)
	}
	return w
}

func (w *waitRegistry) register(id uint64) chan result {
	ch := make(chan result, 1)
	w.add(id, waiter{ch: ch})
	return ch
}

// add makes wt id's waiter; a callback's deadline is when expire fails it.
func (w *waitRegistry) add(id uint64, wt waiter) {
	if wt.fn != nil {
		w.callbacks.Add(1)
	}
	s := &w.shards[id%waitShards]
	s.mu.Lock()
	s.m[id] = wt
	s.mu.Unlock()
	w.pending.Add(1)
}

// take removes and returns id's waiter.
func (w *waitRegistry) take(id uint64) (waiter, bool) {
	s := &w.shards[id%waitShards]
	s.mu.Lock()
	wt, ok := s.m[id]
	if ok {
		delete(s.m, id)
	}
	s.mu.Unlock()
	if ok {
		w.removed(wt)
	}
	return wt, ok
}

// takeAll removes and returns every waiter match accepts (all for nil).
func (w *waitRegistry) takeAll(match func(waiter) bool) []waiter {
	var out []waiter
	for i := range w.shards {
		s := &w.shards[i]
		s.mu.Lock()
		for id, wt := range s.m {
			if match == nil || match(wt) {
				delete(s.m, id)
				out = append(out, wt)
			}
		}
		s.mu.Unlock()
	}
	for _, wt := range out {
		w.removed(wt)
	}
	return out
}

// removed updates the counts for a waiter taken out of the map.
func (w *waitRegistry) removed(wt waiter) {
	w.pending.Add(-1)
	if wt.fn != nil {
		w.callbacks.Add(-1)
	}
}

// done hands r to a waiter taken from the registry.
func (w *waitRegistry) done(wt waiter, r result) {
	if wt.fn == nil {
		wt.ch <- r
		return
	}
	if r.err != nil && w.failed != nil {
		w.failed(r.err)
	}
	wt.fn(r.val, r.err)
}

// trigger completes the waiter for id, if any. Entries proposed by other
// nodes have no waiter here, which is the common case on a follower. A
// callback runs on the calling goroutine (the apply loop, or the raft loop
// for a dropped proposal).
func (w *waitRegistry) trigger(id uint64, r result) {
	if wt, ok := w.take(id); ok {
		w.done(wt, r)
	}
}

// cancel forgets a waiter whose proposer gave up.
func (w *waitRegistry) cancel(id uint64) {
	w.take(id)
}

// expire fails, with err, every callback whose deadline (unix nanos) is
// at or before now.
func (w *waitRegistry) expire(now int64, err error) {
	if w.callbacks.Load() == 0 {
		return
	}
	for _, wt := range w.takeAll(func(wt waiter) bool { return wt.fn != nil && wt.deadline <= now }) {
		w.done(wt, result{err: err})
	}
}

// failAll completes every waiter with err; used when the node stops and
// when leadership changes. Callbacks run outside the shard locks.
func (w *waitRegistry) failAll(err error) {
	for _, wt := range w.takeAll(nil) {
		w.done(wt, result{err: err})
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
