package watch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kvdb/kvdb/internal/engine"
)

// CreateRequest opens one watcher on a stream. Key alone watches one key;
// End (exclusive, "\x00" meaning every key >= Key) makes it a range. The
// caller validates and authorizes it (core does).
type CreateRequest struct {
	Key, End []byte
	// StartRevision is the first revision to report (0: the next one).
	StartRevision int64
	// WatchID asks for an id (0: the stream picks one).
	WatchID int64
	// PrevKV adds each key's previous state to its events.
	PrevKV bool
	// NoPut and NoDelete filter those events out.
	NoPut, NoDelete bool
	// ProgressNotify asks for an empty response with the current revision
	// when the watcher has been idle for the stream's progress interval.
	ProgressNotify bool
	// Fragment lets one revision larger than a response be split across
	// several responses (all but the last marked Fragment).
	Fragment bool
}

// Response is one message of a stream: a watcher's creation or
// cancellation, its events (one or more whole revisions, in order), or
// progress.
type Response struct {
	WatchID int64
	// Revision is the revision the response reflects: the last event's for
	// events, else the newest revision every event of the watcher (or, for
	// a progress answer, of the stream) up to which has been sent.
	Revision int64
	Created  bool
	Canceled bool
	// CompactRevision is set on a cancellation because the watch's next
	// revision is older than the history: the oldest revision available.
	CompactRevision int64
	CancelReason    string
	// Fragment marks a response whose revision continues in the next one.
	Fragment bool
	Events   []engine.Event
	// PrevKV says whether the events' previous states are wanted.
	PrevKV bool
	// Progress marks a progress answer (WatchID -1 for a stream-wide one).
	Progress bool
}

// Errors of Create and Cancel.
var (
	ErrWatchIDInUse = errors.New("watch id already in use on this stream")
	ErrTooManyWatch = errors.New("too many watchers on this stream")
	ErrStreamClosed = errors.New("watch stream closed")
)

// StreamConfig tunes one stream.
type StreamConfig struct {
	// MaxWatchers bounds the watchers open at once on the stream.
	MaxWatchers int
	// ProgressInterval is how often idle ProgressNotify watchers hear the
	// current revision (default 10 minutes, etcd's).
	ProgressInterval time.Duration
	// MaxControl bounds the created and canceled answers waiting for the
	// sender (default DefaultMaxControl): past it WaitControlRoom blocks,
	// so the stream's reader stops taking requests.
	MaxControl int
}

// DefaultProgressInterval is etcd's progress notification interval.
const DefaultProgressInterval = 10 * time.Minute

// DefaultMaxControl is StreamConfig.MaxControl's default.
const DefaultMaxControl = 64

type watcher struct {
	stream   *Stream
	id       int64
	key, end string // end "": key alone; "\x00": every key >= key
	prevKV   bool
	noPut    bool
	noDelete bool
	progress bool
	fragment bool

	// Guarded by Hub.mu.
	pos      int   // w's index in stream.order
	next     int64 // every event below next has been taken by the sender
	lagging  bool
	canceled bool
	buf      []engine.Event
	bufBytes int64

	// Sender only.
	sentSinceTick bool
}

func (w *watcher) matches(k string) bool {
	if w.end == "" {
		return k == w.key
	}
	if k < w.key {
		return false
	}
	return w.end == "\x00" || k < w.end
}

func (w *watcher) filtered(ev *engine.Event) bool {
	if ev.Type() == engine.EventPut {
		return w.noPut
	}
	return w.noDelete
}

// Stream is one client's watch stream: its watchers and the sender that
// writes their responses through send, one at a time, from Run's
// goroutine.
type Stream struct {
	hub  *Hub
	cfg  StreamConfig
	send func(*Response) error

	wakeC chan struct{}

	// Guarded by hub.mu.
	watchers map[int64]*watcher
	order    []*watcher // the watchers in the order the sender visits them
	cursor   int        // where in order the sender's next pass starts
	nextID   int64
	control  []*Response   // created/canceled answers, sent before events
	roomC    chan struct{} // closed when control is drained or the stream closes
	progress bool          // a Progress request is waiting
	closed   bool
}

// NewStream registers a stream whose responses go through send; Run
// drives it.
func (h *Hub) NewStream(cfg StreamConfig, send func(*Response) error) *Stream {
	s, _ := h.NewStreamBounded(0, cfg, send)
	return s
}

// NewStreamBounded is NewStream unless maxStreams (> 0) streams are open
// already: then it returns false and registers nothing.
func (h *Hub) NewStreamBounded(maxStreams int, cfg StreamConfig, send func(*Response) error) (*Stream, bool) {
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = DefaultProgressInterval
	}
	if cfg.MaxControl <= 0 {
		cfg.MaxControl = DefaultMaxControl
	}
	if n := h.streams.Add(1); maxStreams > 0 && n > int64(maxStreams) {
		h.streams.Add(-1)
		return nil, false
	}
	return &Stream{hub: h, cfg: cfg, send: send, wakeC: make(chan struct{}, 1), watchers: map[int64]*watcher{}}, true
}

// queueLocked adds a control answer for the sender.
func (s *Stream) queueLocked(r *Response) {
	s.control = append(s.control, r)
	s.hub.controlQueued++
	s.wake()
}

// WaitControlRoom returns once the stream's control answers waiting for the
// sender are fewer than StreamConfig.MaxControl. The stream's reader calls
// it before it reads each request (one request queues at most two
// answers), so a client that sends requests and does not read the answers
// is held back by its transport's flow control instead of growing the
// queue. It fails once the stream is closed or ctx ends.
func (s *Stream) WaitControlRoom(ctx context.Context) error {
	h := s.hub
	for {
		h.mu.Lock()
		if s.closed {
			h.mu.Unlock()
			return ErrStreamClosed
		}
		if len(s.control) < s.cfg.MaxControl {
			h.mu.Unlock()
			return nil
		}
		if s.roomC == nil {
			s.roomC = make(chan struct{})
		}
		roomC := s.roomC
		h.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-roomC:
		}
	}
}

// roomLocked wakes a WaitControlRoom.
func (s *Stream) roomLocked() {
	if s.roomC != nil {
		close(s.roomC)
		s.roomC = nil
	}
}

func (s *Stream) wake() {
	select {
	case s.wakeC <- struct{}{}:
	default:
	}
}

// Create opens a watcher and returns its id. Its Created answer, and then
// its events, follow through the sender. A start revision that has left
// the history gets a Created answer followed by a cancellation naming the
// oldest revision available.
func (s *Stream) Create(r CreateRequest) (int64, error) {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return 0, ErrStreamClosed
	}
	if s.cfg.MaxWatchers > 0 && len(s.watchers) >= s.cfg.MaxWatchers {
		return 0, fmt.Errorf("%w (at most %d)", ErrTooManyWatch, s.cfg.MaxWatchers)
	}
	id := r.WatchID
	if id > 0 {
		if _, ok := s.watchers[id]; ok {
			return 0, fmt.Errorf("%w: %d", ErrWatchIDInUse, id)
		}
	} else {
		for {
			s.nextID++
			if _, ok := s.watchers[s.nextID]; !ok {
				break
			}
		}
		id = s.nextID
	}
	w := &watcher{
		stream: s, id: id, key: string(r.Key), end: string(r.End),
		prevKV: r.PrevKV, noPut: r.NoPut, noDelete: r.NoDelete,
		progress: r.ProgressNotify, fragment: r.Fragment,
	}
	s.queueLocked(&Response{WatchID: id, Created: true, Revision: h.rev})
	switch {
	case r.StartRevision <= 0:
		w.next = h.rev + 1
	case r.StartRevision <= h.compacted:
		s.queueLocked(&Response{
			WatchID: id, Canceled: true, Revision: h.rev, CompactRevision: h.compacted + 1,
			CancelReason: fmt.Sprintf("revision %d has been compacted; the oldest revision available is %d", r.StartRevision, h.compacted+1),
		})
		return id, nil
	default:
		w.next = r.StartRevision
		w.lagging = r.StartRevision <= h.rev
	}
	s.watchers[id] = w
	w.pos = len(s.order)
	s.order = append(s.order, w)
	h.addLocked(w)
	s.wake()
	return id, nil
}

// Refuse answers a create that was not made (invalid or not permitted)
// with one response both Created and Canceled, naming the reason, as etcd
// does: the stream and its other watchers go on. id is the watch id the
// create asked for, or -1 when it asked for none.
func (s *Stream) Refuse(id int64, reason string) {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return
	}
	s.queueLocked(&Response{WatchID: id, Created: true, Canceled: true, Revision: h.rev, CancelReason: reason})
}

// Cancel closes watcher id; its Canceled answer follows through the sender.
func (s *Stream) Cancel(id int64) bool {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	w, ok := s.watchers[id]
	if !ok || s.closed {
		return false
	}
	s.cancelLocked(w, &Response{WatchID: id, Canceled: true, Revision: h.rev})
	return true
}

func (s *Stream) cancelLocked(w *watcher, resp *Response) {
	w.canceled = true
	delete(s.watchers, w.id)
	last := s.order[len(s.order)-1]
	s.order[w.pos], last.pos = last, w.pos
	s.order[len(s.order)-1] = nil
	s.order = s.order[:len(s.order)-1]
	s.hub.removeLocked(w)
	s.queueLocked(resp)
}

// RequestProgress asks for a progress answer: once every event up to a
// revision has been sent on the stream, a response with WatchID -1 and that
// revision.
func (s *Stream) RequestProgress() {
	s.hub.mu.Lock()
	s.progress = true
	s.hub.mu.Unlock()
	s.wake()
}

// Close unregisters every watcher; Run returns.
func (s *Stream) Close() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	for _, w := range s.watchers {
		w.canceled = true
		h.removeLocked(w)
	}
	s.watchers, s.order = nil, nil
	delete(h.starved, s)
	h.controlQueued -= int64(len(s.control))
	s.control = nil
	s.roomLocked()
	h.streams.Add(-1)
	s.wake()
}

// outgoing is one watcher's events taken in one pass, and their size,
// charged to the Hub's buffered bytes until they are sent.
type outgoing struct {
	w    *watcher
	evs  []engine.Event
	size int64
}

// Run is the stream's sender: it sends control answers and events until
// ctx ends, the stream is closed or send fails, and then closes the
// stream.
func (s *Stream) Run(ctx context.Context) error {
	defer s.Close()
	tick := time.NewTicker(s.cfg.ProgressInterval)
	defer tick.Stop()
	var ctl []*Response
	var outs []outgoing
	// Whatever was taken and not sent is uncharged when the sender stops.
	defer func() {
		for i := range outs {
			s.release(&outs[i])
		}
	}()
	for {
		ticked := false
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.wakeC:
		case <-tick.C:
			ticked = true
		}
		var more, progress bool
		var rev, progressRev int64
		var closed bool
		ctl, outs, rev, progressRev, progress, more, closed = s.take(ctl[:0], outs[:0])
		if closed {
			return ErrStreamClosed
		}
		for _, r := range ctl {
			if err := s.send(r); err != nil {
				return err
			}
		}
		for i := range outs {
			o := &outs[i]
			err := s.sendEvents(o.w, o.evs)
			s.release(o)
			if err != nil {
				return err
			}
			o.w.sentSinceTick = true
		}
		if progress {
			if err := s.send(&Response{WatchID: -1, Progress: true, Revision: progressRev}); err != nil {
				return err
			}
		}
		if ticked {
			if err := s.notifyProgress(rev); err != nil {
				return err
			}
		}
		if more {
			s.wake()
		}
		clear(ctl)
		for i := range outs {
			clear(outs[i].evs)
			outs[i] = outgoing{}
		}
	}
}

// release uncharges o's events once they are sent (or will not be).
func (s *Stream) release(o *outgoing) {
	if o.size == 0 {
		return
	}
	s.hub.mu.Lock()
	s.hub.releaseLocked(o.size)
	s.hub.mu.Unlock()
	o.size = 0
}

// take collects, under the Hub's lock, the control answers and watchers'
// events (a buffer, or a slice of the history for a watcher that lags),
// visiting the watchers round-robin from where the last pass stopped. A
// pass stops taking events once it holds WatcherBufferBytes (having taken
// at least one watcher's), so a stream whose client does not read holds
// about one batch; what it holds stays charged to the Hub's buffered bytes
// until sent, and a lagging watcher reads the history only while those are
// below MaxBufferedBytes (else the stream waits for room). It reports the
// Hub's revision, the revision a waiting progress request answers with,
// whether another pass is needed, and whether the stream is closed.
func (s *Stream) take(ctl []*Response, outs []outgoing) (_ []*Response, _ []outgoing, rev, progressRev int64, progress, more, closed bool) {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return ctl, outs, 0, 0, false, false, true
	}
	ctl = append(ctl, s.control...)
	h.controlQueued -= int64(len(s.control))
	clear(s.control)
	s.control = s.control[:0]
	s.roomLocked()
	rev = h.rev
	progressRev = rev
	budget := h.cfg.WatcherBufferBytes
	var taken int64
	stopped := -1 // where the pass stopped taking events
	var slow []*watcher
	n := len(s.order)
	for i := range n {
		w := s.order[(s.cursor+i)%n]
		full := taken >= budget
		if full && stopped < 0 && (w.lagging || len(w.buf) > 0) {
			stopped = (s.cursor + i) % n
		}
		var o outgoing
		switch {
		case w.lagging && full:
			more = true
			progressRev = min(progressRev, w.next-1)
		case w.lagging && h.buffered >= h.cfg.MaxBufferedBytes:
			// Every stream together holds as much as the node allows:
			// wait until some is sent (releaseLocked wakes this stream).
			h.starved[s] = struct{}{}
			progressRev = min(progressRev, w.next-1)
		case w.lagging:
			evs, size, ok := h.catchUpLocked(w, nil, budget-taken)
			if !ok {
				slow = append(slow, w)
				continue
			}
			h.buffered += size
			o = outgoing{w: w, evs: evs, size: size}
			if w.lagging {
				more = true
				progressRev = min(progressRev, w.next-1)
			}
		case len(w.buf) > 0 && full:
			more = true
			progressRev = min(progressRev, w.next-1)
		case len(w.buf) > 0:
			// The buffer stays charged until it is sent.
			o = outgoing{w: w, evs: w.buf, size: w.bufBytes}
			w.buf, w.bufBytes = nil, 0
			w.next = h.rev + 1
		case w.next <= h.rev:
			w.next = h.rev + 1
		default:
			progressRev = min(progressRev, w.next-1)
		}
		if len(o.evs) > 0 {
			outs = append(outs, o)
			taken += o.size
		} else if o.size > 0 {
			h.releaseLocked(o.size)
		}
	}
	if stopped >= 0 {
		s.cursor = stopped
	}
	for _, w := range slow {
		h.canceledSlow.Add(1)
		s.cancelLocked(w, &Response{
			WatchID: w.id, Canceled: true, Revision: h.rev, CompactRevision: h.compacted + 1,
			CancelReason: fmt.Sprintf("watcher fell behind the history window: revision %d has been compacted; the oldest revision available is %d", w.next, h.compacted+1),
		})
	}
	// Cancellations made in this pass go out after the events taken.
	if len(s.control) > 0 {
		more = true
	}
	progress = s.progress
	s.progress = false
	return ctl, outs, rev, progressRev, progress, more, false
}

// sendEvents sends evs (whole revisions, in order) in responses of at most
// MaxResponseBytes, never splitting a revision unless the watcher allows
// fragments.
func (s *Stream) sendEvents(w *watcher, evs []engine.Event) error {
	limit := int64(s.hub.cfg.MaxResponseBytes)
	for len(evs) > 0 {
		n, size := 0, int64(0)
		for n < len(evs) {
			// The end of the revision starting at n.
			j := n + 1
			rsize := evs[n].Size()
			for j < len(evs) && evs[j].Revision() == evs[n].Revision() {
				rsize += evs[j].Size()
				j++
			}
			if n > 0 && size+rsize > limit {
				break
			}
			n, size = j, size+rsize
			if size > limit {
				break
			}
		}
		batch := evs[:n]
		evs = evs[n:]
		if size > limit && w.fragment && len(batch) > 1 {
			if err := s.sendFragments(w, batch, limit); err != nil {
				return err
			}
			continue
		}
		if err := s.send(&Response{WatchID: w.id, Revision: batch[len(batch)-1].Revision(), Events: batch, PrevKV: w.prevKV}); err != nil {
			return err
		}
		s.hub.eventsSent.Add(int64(len(batch)))
	}
	return nil
}

// sendFragments splits one revision's events into responses of about
// limit bytes, every one but the last marked Fragment.
func (s *Stream) sendFragments(w *watcher, evs []engine.Event, limit int64) error {
	for len(evs) > 0 {
		n, size := 0, int64(0)
		for n < len(evs) && (n == 0 || size+evs[n].Size() <= limit) {
			size += evs[n].Size()
			n++
		}
		r := &Response{WatchID: w.id, Revision: evs[0].Revision(), Events: evs[:n], PrevKV: w.prevKV, Fragment: n < len(evs)}
		if err := s.send(r); err != nil {
			return err
		}
		s.hub.eventsSent.Add(int64(n))
		evs = evs[n:]
	}
	return nil
}

// notifyProgress sends rev to every ProgressNotify watcher that is caught
// up and sent nothing since the last tick.
func (s *Stream) notifyProgress(rev int64) error {
	h := s.hub
	h.mu.Lock()
	var ids []int64
	for _, w := range s.watchers {
		if w.progress && !w.sentSinceTick && !w.lagging && len(w.buf) == 0 && w.next > rev {
			ids = append(ids, w.id)
		}
		w.sentSinceTick = false
	}
	h.mu.Unlock()
	for _, id := range ids {
		if err := s.send(&Response{WatchID: id, Revision: rev, Progress: true}); err != nil {
			return err
		}
	}
	return nil
}

// String describes a watcher's range for logs and errors.
func (r CreateRequest) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%q", r.Key)
	if len(r.End) > 0 {
		fmt.Fprintf(&b, "..%q", r.End)
	}
	return b.String()
}
