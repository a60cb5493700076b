package watch

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvdb/kvdb/internal/engine"
)

// modelEvent is one change as an independent model of the store computes
// it.
type modelEvent struct {
	rev                  int64
	typ                  engine.EventType
	key, value           string
	create, mod, version int64
	hasPrev              bool
	prevValue            string
	prevMod, prevCreate  int64
	prevVersion          int64
}

func (e modelEvent) String() string {
	s := fmt.Sprintf("%d %s %s=%s c=%d m=%d v=%d", e.rev, e.typ, e.key, e.value, e.create, e.mod, e.version)
	if e.hasPrev {
		s += fmt.Sprintf(" prev=%s/%d/%d/%d", e.prevValue, e.prevCreate, e.prevMod, e.prevVersion)
	}
	return s
}

type modelKV struct {
	value                string
	create, mod, version int64
}

// model replays writes the way the engine's contract says they apply.
type model struct {
	rev    int64
	kv     map[string]modelKV
	events []modelEvent
}

func (m *model) apply(ops []engine.Op) {
	rev := m.rev + 1
	var evs []modelEvent
	del := func(k string) {
		old := m.kv[k]
		delete(m.kv, k)
		evs = append(evs, modelEvent{rev: rev, typ: engine.EventDelete, key: k, mod: rev,
			hasPrev: true, prevValue: old.value, prevCreate: old.create, prevMod: old.mod, prevVersion: old.version})
	}
	for _, op := range ops {
		switch op.Type {
		case engine.OpPut:
			k := string(op.Key)
			old, ok := m.kv[k]
			nw := modelKV{value: string(op.Value), create: rev, mod: rev, version: 1}
			if ok {
				nw.create, nw.version = old.create, old.version+1
			}
			m.kv[k] = nw
			evs = append(evs, modelEvent{rev: rev, typ: engine.EventPut, key: k, value: nw.value, create: nw.create, mod: rev, version: nw.version,
				hasPrev: ok, prevValue: old.value, prevCreate: old.create, prevMod: old.mod, prevVersion: old.version})
		case engine.OpDelete:
			if _, ok := m.kv[string(op.Key)]; ok {
				del(string(op.Key))
			}
		case engine.OpDeleteRange:
			var keys []string
			for k := range m.kv {
				if k >= string(op.Key) && (string(op.End) == "\x00" || k < string(op.End)) {
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			for _, k := range keys {
				del(k)
			}
		}
	}
	if len(evs) > 0 {
		m.rev = rev
		m.events = append(m.events, evs...)
	}
}

func fromEngine(ev engine.Event) modelEvent {
	kv := ev.KV()
	e := modelEvent{rev: ev.Revision(), typ: ev.Type(), key: string(kv.Key), value: string(kv.Value), create: kv.CreateRevision, mod: kv.ModRevision, version: kv.Version}
	if p, ok := ev.PrevKV(); ok {
		e.hasPrev, e.prevValue, e.prevCreate, e.prevMod, e.prevVersion = true, string(p.Value), p.CreateRevision, p.ModRevision, p.Version
	}
	return e
}

type spec struct {
	name      string
	req       CreateRequest
	slow      bool // the client reads slowly: its buffer overflows
	startBack int64
}

// received collects one stream's responses.
type received struct {
	mu        sync.Mutex
	byID      map[int64][]modelEvent
	revs      map[int64][]int64 // each response's revisions, to check grouping
	canceled  map[int64]Response
	created   map[int64]bool
	fragments int
}

// TestOrderAndExactlyOnce replays random writes (puts, deletes, range
// deletes, batches at one revision, coalesced groups, transactions,
// evictions) against a store with a Hub and checks every watcher's stream
// against a model's log: every matching event exactly once, in revision
// order, each revision's events in one response, with the right revisions
// and previous values. Small buffers and a small catch-up slice make slow
// watchers switch between the live path and the history.
func TestOrderAndExactlyOnce(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runOrderCheck(t, seed) })
	}
}

func runOrderCheck(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	st := engine.New()
	hub := NewHub(Config{WatcherBufferBytes: 2048, CatchUpEvents: 7, MaxResponseBytes: 300}, 0)
	st.SetObserver(hub)
	m := &model{kv: map[string]modelKV{}}
	keys := []string{"a", "a/1", "a/2", "a/3", "b", "b/1", "c"}
	randOps := func() []engine.Op {
		n := 1 + rng.IntN(4)
		var ops []engine.Op
		for range n {
			k := keys[rng.IntN(len(keys))]
			switch r := rng.IntN(10); {
			case r < 6:
				ops = append(ops, engine.Op{Type: engine.OpPut, Key: []byte(k), Value: []byte(fmt.Sprintf("v%d", rng.IntN(1000)))})
			case r < 8:
				ops = append(ops, engine.Op{Type: engine.OpDelete, Key: []byte(k)})
			case r < 9:
				ops = append(ops, engine.Op{Type: engine.OpDeleteRange, Key: []byte("a/"), End: engine.PrefixEnd([]byte("a/"))})
			default:
				ops = append(ops, engine.Op{Type: engine.OpDeleteRange, Key: []byte(k), End: []byte{0}})
			}
		}
		return ops
	}
	var index uint64
	write := func() {
		index++
		switch rng.IntN(4) {
		case 0:
			ops := randOps()
			st.Apply(index, ops)
			m.apply(ops)
		case 1:
			groups := [][]engine.Op{randOps(), randOps(), randOps()}
			st.ApplyEach(index, groups)
			for _, g := range groups {
				m.apply(g)
			}
		case 2:
			t := &engine.Txn{Compares: []engine.Compare{{Key: []byte("a"), Target: engine.CompareVersion, Op: engine.CompareGreater, Number: 1}}, Success: randOps(), Failure: randOps()}
			res, _, _ := st.ApplyTxn(index, t)
			if res.Succeeded {
				m.apply(t.Success)
			} else {
				m.apply(t.Failure)
			}
		case 3:
			var ek []engine.EvictKey
			var ops []engine.Op
			for _, k := range keys {
				if kv, ok := st.Get([]byte(k)); ok && rng.IntN(3) == 0 {
					ek = append(ek, engine.EvictKey{Key: []byte(k), ModRevision: kv.ModRevision})
					ops = append(ops, engine.Op{Type: engine.OpDelete, Key: []byte(k)})
				}
			}
			st.ApplyEvict(index, ek)
			m.apply(ops)
		}
	}
	for range 50 {
		write()
	}
	specs := []spec{
		{name: "key a", req: CreateRequest{Key: []byte("a"), PrevKV: true}},
		{name: "prefix a/", req: CreateRequest{Key: []byte("a/"), End: engine.PrefixEnd([]byte("a/")), PrevKV: true}},
		{name: "prefix a", req: CreateRequest{Key: []byte("a"), End: engine.PrefixEnd([]byte("a"))}},
		{name: "prefix b/1", req: CreateRequest{Key: []byte("b/1"), End: engine.PrefixEnd([]byte("b/1")), NoDelete: true}},
		{name: "range b..c", req: CreateRequest{Key: []byte("b"), End: []byte("c")}},
		{name: "all from rev 1", req: CreateRequest{Key: []byte{0}, End: []byte{0}, StartRevision: 1, PrevKV: true}},
		{name: "all from rev 20, slow", req: CreateRequest{Key: []byte{0}, End: []byte{0}, StartRevision: 20, Fragment: true}, slow: true},
		{name: "all, slow", req: CreateRequest{Key: []byte{0}, End: []byte{0}}, slow: true},
		{name: "no put", req: CreateRequest{Key: []byte{0}, End: []byte{0}, NoPut: true}},
		{name: "no delete", req: CreateRequest{Key: []byte{0}, End: []byte{0}, NoDelete: true}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type client struct {
		spec  spec
		rec   *received
		id    int64
		from  int64 // the model's revision when it was created
		strm  *Stream
		doneC chan error
	}
	var clients []*client
	for _, sp := range specs {
		rec := &received{byID: map[int64][]modelEvent{}, revs: map[int64][]int64{}, canceled: map[int64]Response{}, created: map[int64]bool{}}
		slow := sp.slow
		n := 0
		s := hub.NewStream(StreamConfig{}, func(r *Response) error {
			if slow {
				n++
				if n%5 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			switch {
			case r.Created:
				rec.created[r.WatchID] = true
			case r.Canceled:
				rec.canceled[r.WatchID] = *r
			case r.Progress:
			default:
				var revs []int64
				for _, ev := range r.Events {
					rec.byID[r.WatchID] = append(rec.byID[r.WatchID], fromEngine(ev))
					if len(revs) == 0 || revs[len(revs)-1] != ev.Revision() {
						revs = append(revs, ev.Revision())
					}
				}
				if r.Fragment {
					rec.fragments++
					revs = append(revs, -1)
				}
				rec.revs[r.WatchID] = append(rec.revs[r.WatchID], revs...)
			}
			return nil
		})
		id, err := s.Create(sp.req)
		if err != nil {
			t.Fatal(err)
		}
		c := &client{spec: sp, rec: rec, id: id, from: m.rev, strm: s, doneC: make(chan error, 1)}
		go func() { c.doneC <- s.Run(ctx) }()
		clients = append(clients, c)
	}
	for range 400 {
		write()
	}
	// Wait (bounded) until every watcher has everything up to the last
	// revision, then stop.
	want := func(c *client) []modelEvent {
		var out []modelEvent
		start := c.spec.req.StartRevision
		if start == 0 {
			start = c.from + 1
		}
		w := &watcher{key: string(c.spec.req.Key), end: string(c.spec.req.End), noPut: c.spec.req.NoPut, noDelete: c.spec.req.NoDelete}
		for _, e := range m.events {
			if e.rev < start || !w.matches(e.key) {
				continue
			}
			if (e.typ == engine.EventPut && w.noPut) || (e.typ == engine.EventDelete && w.noDelete) {
				continue
			}
			if e.typ == engine.EventDelete {
				// A delete event carries the key and the deleting revision.
				e.value, e.create, e.version = "", 0, 0
			}
			if !c.spec.req.PrevKV {
				// The stream holds previous values either way; the check
				// compares them only where they were asked for.
			}
			out = append(out, e)
		}
		return out
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, c := range clients {
		for {
			c.rec.mu.Lock()
			n := len(c.rec.byID[c.id])
			c.rec.mu.Unlock()
			if n >= len(want(c)) || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	cancel()
	for _, c := range clients {
		<-c.doneC
		w := want(c)
		got := c.rec.byID[c.id]
		if !c.rec.created[c.id] {
			t.Errorf("%s: no created answer", c.spec.name)
		}
		if r, ok := c.rec.canceled[c.id]; ok {
			t.Errorf("%s: canceled: %+v", c.spec.name, r)
		}
		if len(got) != len(w) {
			t.Errorf("%s: got %d events, want %d", c.spec.name, len(got), len(w))
		}
		for i := range min(len(got), len(w)) {
			if got[i].String() != w[i].String() {
				t.Errorf("%s: event %d: got %s, want %s", c.spec.name, i, got[i], w[i])
				break
			}
		}
		// Each revision arrives in one response (or consecutive fragments).
		seen := map[int64]bool{}
		revs := c.rec.revs[c.id]
		for i, r := range revs {
			if r < 0 {
				continue
			}
			if seen[r] && !(i > 0 && revs[i-1] == -1) {
				t.Errorf("%s: revision %d split across responses", c.spec.name, r)
			}
			seen[r] = true
		}
	}
	if s := hub.Stats(); s.BufferedBytes != 0 || s.Watchers != 0 || s.Streams != 0 {
		t.Errorf("after every stream closed: %+v", s)
	}
	t.Logf("stats %+v", hub.Stats())
	for _, c := range clients {
		t.Logf("%s: %d events, %d fragments", c.spec.name, len(c.rec.byID[c.id]), c.rec.fragments)
	}
	if hub.Stats().Lagged == 0 {
		t.Error("no watcher lagged: the catch-up path went untested")
	}
	_ = strings.Join
}
