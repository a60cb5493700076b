package service

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/engine"
)

// checkOp is one change of a logged write, as the model replays it.
type checkOp struct {
	put, del bool
	prefix   bool // del of every key with the prefix key
	key, val string
}

// loggedWrite is a write a client made and the revision it created.
type loggedWrite struct {
	rev int64
	ops []checkOp
}

// wmodel replays logged writes in revision order and derives the events
// every watcher must see.
type wmodel struct {
	kv     map[string]*kvdbv1.KeyValue
	events []string // "rev TYPE key value create version prev"
	revOf  []int64  // each event's revision
	keyOf  []string
}

func (m *wmodel) apply(w loggedWrite) {
	for _, op := range w.ops {
		switch {
		case op.put:
			old := m.kv[op.key]
			nw := &kvdbv1.KeyValue{Key: []byte(op.key), Value: []byte(op.val), CreateRevision: w.rev, ModRevision: w.rev, Version: 1}
			prev := "-"
			if old != nil {
				nw.CreateRevision, nw.Version = old.CreateRevision, old.Version+1
				prev = string(old.Value)
			}
			m.kv[op.key] = nw
			m.add(w.rev, op.key, fmt.Sprintf("%d PUT %s=%s c=%d v=%d prev=%s", w.rev, op.key, op.val, nw.CreateRevision, nw.Version, prev))
		case op.del && op.prefix:
			var keys []string
			for k := range m.kv {
				if strings.HasPrefix(k, op.key) {
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			for _, k := range keys {
				m.del(w.rev, k)
			}
		case op.del:
			if m.kv[op.key] != nil {
				m.del(w.rev, op.key)
			}
		}
	}
}

func (m *wmodel) del(rev int64, k string) {
	old := m.kv[k]
	delete(m.kv, k)
	m.add(rev, k, fmt.Sprintf("%d DELETE %s prev=%s", rev, k, old.Value))
}

func (m *wmodel) add(rev int64, key, line string) {
	m.events, m.revOf, m.keyOf = append(m.events, line), append(m.revOf, rev), append(m.keyOf, key)
}

func eventCheckLine(e *kvdbv1.Event) string {
	kv := e.GetKv()
	prev := "-"
	if p := e.GetPrevKv(); p != nil {
		prev = string(p.GetValue())
	}
	if e.GetType() == kvdbv1.Event_EVENT_TYPE_DELETE {
		return fmt.Sprintf("%d DELETE %s prev=%s", kv.GetModRevision(), kv.GetKey(), prev)
	}
	return fmt.Sprintf("%d PUT %s=%s c=%d v=%d prev=%s", kv.GetModRevision(), kv.GetKey(), kv.GetValue(), kv.GetCreateRevision(), kv.GetVersion(), prev)
}

// checkedWatcher is one watch stream the checker reads.
type checkedWatcher struct {
	name       string
	node       int
	key        string
	prefix     bool
	start      int64 // the first revision it covers
	mu         sync.Mutex
	lines      []string
	splitRevs  []int64 // revisions that arrived in more than one response
	err        error
	sawSentry  bool
	lastRespRv int64
}

func (w *checkedWatcher) run(ctx context.Context, ws kvdbv1.WatchService_WatchClient, sentry string) {
	seen := map[int64]bool{}
	for {
		r, err := ws.Recv()
		if err != nil {
			w.mu.Lock()
			if ctx.Err() == nil {
				w.err = err
			}
			w.mu.Unlock()
			return
		}
		if r.GetCanceled() {
			w.mu.Lock()
			w.err = fmt.Errorf("canceled: %v", r)
			w.mu.Unlock()
			return
		}
		w.mu.Lock()
		inResp := map[int64]bool{}
		for _, e := range r.GetEvents() {
			rev := e.GetKv().GetModRevision()
			if seen[rev] && !inResp[rev] {
				w.splitRevs = append(w.splitRevs, rev)
			}
			seen[rev], inResp[rev] = true, true
			w.lines = append(w.lines, eventCheckLine(e))
			if string(e.GetKv().GetKey()) == sentry {
				w.sawSentry = true
			}
		}
		w.mu.Unlock()
	}
}

// TestWatchOrderAcrossClients is the ordering and exactly-once checker on
// a 3-node cluster: several clients write through every node (puts,
// deletes, prefix deletes, batches, conditional transactions) while
// watchers on every node (a prefix and a single key, from revision 1 and
// from the moment they are created) read; the writes, replayed in the
// revision order their answers report, must produce exactly each watcher's
// stream, and every revision must arrive in one response.
func TestWatchOrderAcrossClients(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := func(i int) kvdbv1.WatchServiceClient {
		c.mu.Lock()
		defer c.mu.Unlock()
		return kvdbv1.NewWatchServiceClient(c.nodes[i].conn)
	}
	txn := func(i int) kvdbv1.TxnServiceClient {
		c.mu.Lock()
		defer c.mu.Unlock()
		return kvdbv1.NewTxnServiceClient(c.nodes[i].conn)
	}
	var watchers []*checkedWatcher
	open := func(w *checkedWatcher, startRev int64) {
		ws, err := conn(w.node).Watch(ctx)
		if err == nil {
			err = ws.Send(createReq(&kvdbv1.WatchCreateRequest{Key: []byte(w.key), Prefix: w.prefix, StartRevision: startRev, PrevKv: true}))
		}
		var r *kvdbv1.WatchResponse
		if err == nil {
			r, err = ws.Recv()
		}
		if err != nil || !r.GetCreated() {
			t.Errorf("%s: create: %v, %v", w.name, r, err)
			return
		}
		w.start = startRev
		if startRev == 0 {
			w.start = r.GetHeader().GetRevision() + 1
		}
		sentry := "c/end"
		if !w.prefix {
			sentry = w.key
		}
		watchers = append(watchers, w)
		go w.run(ctx, ws, sentry)
	}
	for i := range 3 {
		open(&checkedWatcher{name: fmt.Sprintf("n%d prefix from 1", i+1), node: i, key: "c/", prefix: true}, 1)
		open(&checkedWatcher{name: fmt.Sprintf("n%d key c/k1", i+1), node: i, key: "c/k1"}, 1)
	}

	var mu sync.Mutex
	var log []loggedWrite
	record := func(rev int64, ops ...checkOp) {
		mu.Lock()
		log = append(log, loggedWrite{rev: rev, ops: ops})
		mu.Unlock()
	}
	keys := []string{"c/k0", "c/k1", "c/k2", "c/k3", "c/sub/a", "c/sub/b"}
	const writers, writesEach = 4, 150
	var wg sync.WaitGroup
	var failed sync.Once
	fail := func(err error) { failed.Do(func() { t.Error(err) }) }
	for wi := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(wi), 7))
			for n := range writesEach {
				node := rng.IntN(3)
				kv := c.kv(node)
				k := keys[rng.IntN(len(keys))]
				v := fmt.Sprintf("w%d-%d", wi, n)
				switch r := rng.IntN(10); {
				case r < 5:
					resp, err := kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte(k), Value: []byte(v)})
					if err != nil {
						fail(err)
						return
					}
					record(resp.GetHeader().GetRevision(), checkOp{put: true, key: k, val: v})
				case r < 6:
					resp, err := kv.Delete(ctx, &kvdbv1.DeleteRequest{Key: []byte(k)})
					if err != nil {
						fail(err)
						return
					}
					if resp.GetDeleted() > 0 {
						record(resp.GetHeader().GetRevision(), checkOp{del: true, key: k})
					}
				case r < 7:
					resp, err := kv.Delete(ctx, &kvdbv1.DeleteRequest{Key: []byte("c/sub/"), Prefix: true})
					if err != nil {
						fail(err)
						return
					}
					if resp.GetDeleted() > 0 {
						record(resp.GetHeader().GetRevision(), checkOp{del: true, prefix: true, key: "c/sub/"})
					}
				case r < 9:
					k2 := keys[rng.IntN(len(keys))]
					resp, err := kv.Batch(ctx, &kvdbv1.BatchRequest{Ops: []*kvdbv1.BatchOp{
						{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: []byte(k), Value: []byte(v)}}},
						{Op: &kvdbv1.BatchOp_Delete{Delete: &kvdbv1.BatchDelete{Key: []byte(k2)}}},
					}})
					if err != nil {
						fail(err)
						return
					}
					record(resp.GetHeader().GetRevision(), checkOp{put: true, key: k, val: v}, checkOp{del: true, key: k2})
				default:
					// Put v on k if k1 exists, else put on k2 and delete
					// the sub prefix: either branch changes something.
					resp, err := txn(node).Execute(ctx, &kvdbv1.ExecuteRequest{
						Compares: []*kvdbv1.Compare{{Key: []byte("c/k1"), Operator: kvdbv1.CompareOperator_COMPARE_OPERATOR_GREATER,
							Operand: &kvdbv1.Compare_Version{Version: 0}}},
						Success: []*kvdbv1.ExecuteOp{{Op: &kvdbv1.ExecuteOp_Put{Put: &kvdbv1.PutRequest{Key: []byte(k), Value: []byte(v)}}},
							{Op: &kvdbv1.ExecuteOp_Range{Range: &kvdbv1.RangeRequest{Key: []byte("c/"), Prefix: true}}}},
						Failure: []*kvdbv1.ExecuteOp{{Op: &kvdbv1.ExecuteOp_Put{Put: &kvdbv1.PutRequest{Key: []byte("c/k2"), Value: []byte(v)}}},
							{Op: &kvdbv1.ExecuteOp_Delete{Delete: &kvdbv1.DeleteRequest{Key: []byte("c/sub/"), Prefix: true}}}},
					})
					if err != nil {
						fail(err)
						return
					}
					if resp.GetSucceeded() {
						record(resp.GetHeader().GetRevision(), checkOp{put: true, key: k, val: v})
					} else {
						record(resp.GetHeader().GetRevision(), checkOp{put: true, key: "c/k2", val: v}, checkOp{del: true, prefix: true, key: "c/sub/"})
					}
				}
				if wi == 0 && n == writesEach/2 {
					// Watchers created mid-load: from the next revision.
					for i := range 3 {
						open(&checkedWatcher{name: fmt.Sprintf("n%d prefix from now", i+1), node: i, key: "c/", prefix: true}, 0)
					}
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// The single-key watchers' sentry first: the prefix watchers stop
	// reading at theirs, which must be the last write.
	for _, k := range []string{"c/k1", "c/end"} {
		resp, err := c.kv(0).Put(ctx, &kvdbv1.PutRequest{Key: []byte(k), Value: []byte("end")})
		if err != nil {
			t.Fatal(err)
		}
		record(resp.GetHeader().GetRevision(), checkOp{put: true, key: k, val: "end"})
	}
	sort.Slice(log, func(i, j int) bool { return log[i].rev < log[j].rev })
	m := &wmodel{kv: map[string]*kvdbv1.KeyValue{}}
	for i, w := range log {
		if i > 0 && log[i-1].rev == w.rev {
			t.Fatalf("two writes answered with revision %d", w.rev)
		}
		m.apply(w)
	}
	// Wait (bounded) for every watcher's sentry.
	deadline := time.Now().Add(30 * time.Second)
	for _, w := range watchers {
		for {
			w.mu.Lock()
			done := w.sawSentry || w.err != nil
			w.mu.Unlock()
			if done || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	cancel()
	total := 0
	for _, w := range watchers {
		var want []string
		for i, line := range m.events {
			k := m.keyOf[i]
			if m.revOf[i] >= w.start && (k == w.key || w.prefix && strings.HasPrefix(k, w.key)) {
				want = append(want, line)
			}
		}
		w.mu.Lock()
		got := w.lines
		if w.err != nil {
			t.Errorf("%s: %v", w.name, w.err)
		}
		if len(w.splitRevs) > 0 {
			t.Errorf("%s: revisions split across responses: %v", w.name, w.splitRevs)
		}
		w.mu.Unlock()
		total += len(got)
		if len(got) != len(want) {
			t.Errorf("%s: %d events, want %d", w.name, len(got), len(want))
		}
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Errorf("%s: event %d is %q, want %q", w.name, i, got[i], want[i])
				break
			}
		}
	}
	t.Logf("%d writes, %d model events, %d events checked over %d watchers", len(log), len(m.events), total, len(watchers))
	_ = engine.PrefixEnd
}
