// Package watch serves KVDB's change streams: it keeps a window of recent
// changes (the history), matches every applied change against the
// registered watchers, and feeds each stream's sender.
//
// The engine reports each revision's changes to the Hub (an
// engine.Observer) from the apply loop, under the store's write lock. The
// Hub appends them to the history and hands each matching watcher the
// events in its bounded buffer; it never blocks and never waits for a
// client. Each Stream has one sender goroutine that takes its watchers'
// buffers and sends them, whole revisions at a time, in revision order.
//
// A watcher whose buffer overflows (its client reads slower than the
// writes come) drops the buffer and is marked lagging: the sender then
// reads its events from the history, from the first revision it has not
// sent, a bounded slice per pass, and puts it back on the live path once it
// has reached the newest revision (both under the Hub's lock, so no
// revision is skipped or repeated). A sender holds about
// WatcherBufferBytes of events at a time (one revision if larger), buffers
// and history slices alike, and they count against MaxBufferedBytes until
// sent: a client that does not read makes its stream hold one batch, and
// every stream together what MaxBufferedBytes allows. A lagging watcher whose next revision
// has left the history is canceled with the oldest revision still there
// (etcd's compacted answer).
//
// Registering a watcher and reading the Hub's revision happen under the
// same lock Committed takes, so a watch from revision 0 starts exactly
// after the last revision the store has published, and a client that read
// at revision R and watches from R+1 sees every later change once.
package watch

import (
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"go.etcd.io/etcd/pkg/v3/adt"

	"github.com/kvdb/kvdb/internal/engine"
)

// Defaults of Config.
const (
	// DefaultHistoryRevisions keeps about three minutes at 10,000 writes/s
	// of small values.
	DefaultHistoryRevisions = 2_000_000
	// DefaultHistoryBytes bounds the memory the history keeps alive: about
	// half a minute at 10,000 writes/s of 16-byte keys and 100-byte values
	// (engine.Event.Size: about 200 bytes an event). Larger, a node under
	// a steady write load spends its time growing its heap (every fresh
	// page a fault) long after its data stopped growing.
	DefaultHistoryBytes = 64 << 20
	// DefaultWatcherBufferBytes bounds one watcher's buffered events.
	DefaultWatcherBufferBytes = 1 << 20
	// DefaultMaxBufferedBytes bounds every watcher's buffers together.
	DefaultMaxBufferedBytes = 256 << 20
	// DefaultCatchUpEvents is how many history events a lagging watcher
	// reads per pass of its sender.
	DefaultCatchUpEvents = 4096
)

// Config tunes a Hub.
type Config struct {
	// HistoryRevisions and HistoryBytes bound the history window: the
	// oldest revisions leave it when it holds more of either.
	HistoryRevisions int64
	HistoryBytes     int64
	// WatcherBufferBytes bounds one watcher's buffer, and what a stream's
	// sender takes in one pass; MaxBufferedBytes every buffer and what
	// every sender holds together. Past either a watcher catches up from
	// the history instead, and catching up waits while every sender and
	// buffer together hold MaxBufferedBytes.
	WatcherBufferBytes int64
	MaxBufferedBytes   int64
	// CatchUpEvents is the history events a lagging watcher reads per
	// pass.
	CatchUpEvents int
	// MaxResponseBytes bounds the events of one response (whole revisions;
	// a single larger revision is split only for fragment watchers).
	MaxResponseBytes int
}

func (c *Config) setDefaults() {
	if c.HistoryRevisions <= 0 {
		c.HistoryRevisions = DefaultHistoryRevisions
	}
	if c.HistoryBytes <= 0 {
		c.HistoryBytes = DefaultHistoryBytes
	}
	if c.WatcherBufferBytes <= 0 {
		c.WatcherBufferBytes = DefaultWatcherBufferBytes
	}
	if c.MaxBufferedBytes <= 0 {
		c.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if c.CatchUpEvents <= 0 {
		c.CatchUpEvents = DefaultCatchUpEvents
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = 1 << 20
	}
}

// Hub is one node's watch registry and history. Attach it to the store
// with engine.Store.SetObserver before the apply loop starts.
type Hub struct {
	cfg Config

	mu        sync.Mutex
	rev       int64 // the last revision the store published
	compacted int64 // every revision <= compacted has left the history
	hist      ring
	histBytes int64
	histRevs  int64
	exact     map[string][]*watcher // single-key watchers by key
	prefixes  map[string][]*watcher // prefix watchers by prefix
	prefixLen []int                 // the lengths of the prefixes watched, ascending
	lenCount  map[int]int           // prefix watchers per prefix length
	ranges    adt.IntervalTree      // the other range watchers: a *rangeWatchers per distinct range
	watchers  int
	// buffered is the bytes of events waiting to be sent: in watchers'
	// buffers and taken by senders (buffers and catch-up slices of the
	// history) until they are sent.
	buffered int64
	// starved are the streams whose lagging watchers wait for buffered
	// to fall below MaxBufferedBytes before they read more history.
	starved map[*Stream]struct{}
	// controlQueued is the control answers waiting in every stream.
	controlQueued int64

	streams      atomic.Int64
	eventsSent   atomic.Int64
	canceledSlow atomic.Int64
	lagged       atomic.Int64
}

var _ engine.Observer = (*Hub)(nil)

// NewHub returns a Hub whose history starts after revision rev (the
// store's revision when it is attached).
func NewHub(cfg Config, rev int64) *Hub {
	cfg.setDefaults()
	return &Hub{cfg: cfg, rev: rev, compacted: rev, exact: map[string][]*watcher{},
		prefixes: map[string][]*watcher{}, lenCount: map[int]int{}, ranges: adt.NewIntervalTree(),
		starved: map[*Stream]struct{}{}}
}

// Committed implements engine.Observer: it records rev's events in the
// history and buffers them for the watchers they match. It never blocks.
func (h *Hub) Committed(rev int64, events []engine.Event) {
	h.mu.Lock()
	for i := range events {
		h.hist.push(events[i])
		h.histBytes += events[i].Size()
	}
	h.histRevs++
	h.rev = rev
	h.trimLocked()
	if h.watchers > 0 {
		for i := range events {
			ev := &events[i]
			k := ev.KeyString()
			if ws := h.exact[k]; len(ws) > 0 {
				for _, w := range ws {
					h.offerLocked(w, ev)
				}
			}
			// One map look-up per prefix length watched.
			for _, n := range h.prefixLen {
				if n > len(k) {
					break
				}
				for _, w := range h.prefixes[k[:n]] {
					h.offerLocked(w, ev)
				}
			}
			// A search of the ranges holding k: a watcher whose range does
			// not hold it costs nothing.
			if h.ranges.Len() > 0 {
				h.ranges.Visit(keyInterval(k), func(iv *adt.IntervalValue) bool {
					for _, w := range iv.Val.(*rangeWatchers).ws {
						h.offerLocked(w, ev)
					}
					return true
				})
			}
		}
	}
	h.mu.Unlock()
}

// Reset implements engine.Observer: the store was replaced by a snapshot
// at rev, so the history restarts there. Watchers waiting for revisions
// the snapshot skipped catch up from the (empty) history, which cancels
// them as compacted; their clients resume with a read.
func (h *Hub) Reset(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hist = ring{}
	h.histBytes, h.histRevs = 0, 0
	h.rev, h.compacted = rev, rev
	h.forEachLocked(func(w *watcher) {
		if w.next <= rev {
			h.lagLocked(w)
		}
	})
}

// trimLocked drops the oldest revisions while the history holds more than
// its bounds, always keeping the newest revision.
func (h *Hub) trimLocked() {
	for h.histRevs > 1 && (h.histRevs > h.cfg.HistoryRevisions || h.histBytes > h.cfg.HistoryBytes) {
		r := h.hist.at(0).Revision()
		for h.hist.n > 0 && h.hist.at(0).Revision() == r {
			ev := h.hist.pop()
			h.histBytes -= ev.Size()
		}
		h.histRevs--
		h.compacted = r
	}
}

// offerLocked buffers ev for w, or switches w to catching up when its
// buffer (or every buffer together) is full.
func (h *Hub) offerLocked(w *watcher, ev *engine.Event) {
	if w.lagging || w.canceled || ev.Revision() < w.next || w.filtered(ev) {
		return
	}
	size := ev.Size()
	if w.bufBytes+size > h.cfg.WatcherBufferBytes || h.buffered+size > h.cfg.MaxBufferedBytes {
		h.lagLocked(w)
		return
	}
	w.buf = append(w.buf, *ev)
	w.bufBytes += size
	h.buffered += size
	w.stream.wake()
}

// lagLocked drops w's buffer: its sender reads from the history instead,
// from w.next.
func (h *Hub) lagLocked(w *watcher) {
	if !w.lagging {
		h.lagged.Add(1)
	}
	w.lagging = true
	h.releaseLocked(w.bufBytes)
	clear(w.buf)
	w.buf, w.bufBytes = w.buf[:0], 0
	w.stream.wake()
}

func (h *Hub) forEachLocked(fn func(*watcher)) {
	for _, ws := range h.exact {
		for _, w := range ws {
			fn(w)
		}
	}
	for _, ws := range h.prefixes {
		for _, w := range ws {
			fn(w)
		}
	}
	h.ranges.Visit(everyKey, func(iv *adt.IntervalValue) bool {
		for _, w := range iv.Val.(*rangeWatchers).ws {
			fn(w)
		}
		return true
	})
}

// rangeWatchers are the watchers of one range, the value of its node in
// Hub.ranges.
type rangeWatchers struct {
	ws []*watcher
}

// rangeInterval is [key, end) as a node of Hub.ranges. The tree's strings
// treat "" as above every key, which is what an end of "\x00" means; keys
// are never empty, so a range from "" starts at the first key, "\x00".
func rangeInterval(key, end string) adt.Interval {
	if key == "" {
		key = "\x00"
	}
	if end == "\x00" {
		end = ""
	}
	return adt.NewStringAffineInterval(key, end)
}

// keyInterval is the interval holding key alone: the ranges it overlaps are
// the ranges holding key.
func keyInterval(key string) adt.Interval {
	return adt.NewStringAffineInterval(key, key+"\x00")
}

// everyKey overlaps every range of Hub.ranges.
var everyKey = adt.NewStringAffineInterval("\x00", "")

// isPrefix reports whether [key, end) is exactly the keys starting with key.
func isPrefix(key, end string) bool {
	return key != "" && end != "\x00" && end == string(engine.PrefixEnd([]byte(key)))
}

func removeWatcher(ws []*watcher, w *watcher) []*watcher {
	for i, x := range ws {
		if x == w {
			ws[i] = ws[len(ws)-1]
			ws[len(ws)-1] = nil
			return ws[:len(ws)-1]
		}
	}
	return ws
}

func (h *Hub) addLocked(w *watcher) {
	switch {
	case w.end == "":
		h.exact[w.key] = append(h.exact[w.key], w)
	case isPrefix(w.key, w.end):
		h.prefixes[w.key] = append(h.prefixes[w.key], w)
		if h.lenCount[len(w.key)]++; h.lenCount[len(w.key)] == 1 {
			h.prefixLen = append(h.prefixLen, len(w.key))
			slices.Sort(h.prefixLen)
		}
	default:
		ivl := rangeInterval(w.key, w.end)
		if iv := h.ranges.Find(ivl); iv != nil {
			g := iv.Val.(*rangeWatchers)
			g.ws = append(g.ws, w)
		} else {
			h.ranges.Insert(ivl, &rangeWatchers{ws: []*watcher{w}})
		}
	}
	h.watchers++
}

func (h *Hub) removeLocked(w *watcher) {
	switch {
	case w.end == "":
		if ws := removeWatcher(h.exact[w.key], w); len(ws) == 0 {
			delete(h.exact, w.key)
		} else {
			h.exact[w.key] = ws
		}
	case isPrefix(w.key, w.end):
		if ws := removeWatcher(h.prefixes[w.key], w); len(ws) == 0 {
			delete(h.prefixes, w.key)
		} else {
			h.prefixes[w.key] = ws
		}
		if h.lenCount[len(w.key)]--; h.lenCount[len(w.key)] == 0 {
			delete(h.lenCount, len(w.key))
			h.prefixLen = slices.DeleteFunc(h.prefixLen, func(n int) bool { return n == len(w.key) })
		}
	default:
		ivl := rangeInterval(w.key, w.end)
		if iv := h.ranges.Find(ivl); iv != nil {
			g := iv.Val.(*rangeWatchers)
			if g.ws = removeWatcher(g.ws, w); len(g.ws) == 0 {
				h.ranges.Delete(ivl)
			}
		}
	}
	h.watchers--
	h.releaseLocked(w.bufBytes)
	w.buf, w.bufBytes = nil, 0
}

// releaseLocked uncharges n bytes from buffered, and wakes the streams
// waiting for room once there is some.
func (h *Hub) releaseLocked(n int64) {
	h.buffered -= n
	if h.buffered < h.cfg.MaxBufferedBytes && len(h.starved) > 0 {
		for s := range h.starved {
			s.wake()
		}
		clear(h.starved)
	}
}

// catchUpLocked reads w's events from the history, from w.next, always
// whole revisions: it stops after CatchUpEvents scanned events or once the
// events read reach budget bytes, whichever comes first, but reads at
// least one revision. It advances w.next past what it read and returns the
// events and their size; the caller charges them to buffered. It reports
// false when w.next has left the history. Once w reaches the newest
// revision it is back on the live path.
func (h *Hub) catchUpLocked(w *watcher, out []engine.Event, budget int64) ([]engine.Event, int64, bool) {
	if w.next <= h.compacted {
		return out, 0, false
	}
	start := h.hist.search(w.next)
	scanned := 0
	var size int64
	for i := start; i < h.hist.n; i++ {
		ev := h.hist.at(i)
		if i > start && (scanned >= h.cfg.CatchUpEvents || size >= budget) && ev.Revision() != h.hist.at(i-1).Revision() {
			w.next = ev.Revision()
			return out, size, true
		}
		scanned++
		if w.matches(ev.KeyString()) && !w.filtered(ev) {
			out = append(out, *ev)
			size += ev.Size()
		}
	}
	w.next = h.rev + 1
	w.lagging = false
	return out, size, true
}

// Stats is a snapshot of the Hub's state for metrics.
type Stats struct {
	Watchers, Streams                int64
	EventsSent, CanceledSlow, Lagged int64
	BufferedBytes                    int64
	ControlQueued                    int64
	Revision, OldestRevision         int64
	HistoryRevisions, HistoryBytes   int64
	HistoryEvents                    int64
}

// Stats reports the Hub's counters and sizes.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Stats{
		Watchers:         int64(h.watchers),
		Streams:          h.streams.Load(),
		EventsSent:       h.eventsSent.Load(),
		CanceledSlow:     h.canceledSlow.Load(),
		Lagged:           h.lagged.Load(),
		BufferedBytes:    h.buffered,
		ControlQueued:    h.controlQueued,
		Revision:         h.rev,
		OldestRevision:   h.compacted + 1,
		HistoryRevisions: h.histRevs,
		HistoryBytes:     h.histBytes,
		HistoryEvents:    int64(h.hist.n),
	}
}

// Revision is the last revision the Hub has seen published.
func (h *Hub) Revision() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// ring is a growable circular buffer of events in revision order.
type ring struct {
	buf  []engine.Event
	head int
	n    int
}

func (r *ring) push(ev engine.Event) {
	if r.n == len(r.buf) {
		nb := make([]engine.Event, max(64, 2*len(r.buf)))
		for i := range r.n {
			nb[i] = *r.at(i)
		}
		r.buf, r.head = nb, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = ev
	r.n++
}

func (r *ring) at(i int) *engine.Event { return &r.buf[(r.head+i)%len(r.buf)] }

func (r *ring) pop() engine.Event {
	ev := r.buf[r.head]
	r.buf[r.head] = engine.Event{}
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	if r.n == 0 {
		r.head = 0
	}
	// Give memory back when the window shrank a lot.
	if len(r.buf) > 1024 && r.n < len(r.buf)/8 {
		nb := make([]engine.Event, len(r.buf)/4)
		for i := range r.n {
			nb[i] = *r.at(i)
		}
		r.buf, r.head = nb, 0
	}
	return ev
}

// search returns the index of the first event at revision >= rev.
func (r *ring) search(rev int64) int {
	return sort.Search(r.n, func(i int) bool { return r.at(i).Revision() >= rev })
}
