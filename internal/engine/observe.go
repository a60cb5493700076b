package engine

// EventType is the kind of a change an Event reports.
type EventType uint8

const (
	// EventPut reports that a key was created or replaced.
	EventPut EventType = iota + 1
	// EventDelete reports that a key was removed (by a delete, a range
	// delete, an eviction or any other removal).
	EventDelete
)

func (t EventType) String() string {
	if t == EventDelete {
		return "DELETE"
	}
	return "PUT"
}

// Event is one change of one key at one revision, as the engine applied
// it. It holds the engine's immutable entries, not copies: recording one
// costs 32 bytes beyond the entries themselves. Its accessors return
// KeyValues that alias engine memory (read-only).
type Event struct {
	rev  int64
	typ  EventType
	cur  *entry // the key's new state (EventPut)
	prev *entry // the key's state before the change (nil: it did not exist)
}

// Revision is the store revision the change created.
func (ev *Event) Revision() int64 { return ev.rev }

// Type is EventPut or EventDelete.
func (ev *Event) Type() EventType { return ev.typ }

// Key is the changed key.
func (ev *Event) Key() []byte {
	if ev.cur != nil {
		return ev.cur.keyBytes()
	}
	return ev.prev.keyBytes()
}

// KeyString is the changed key as a string aliasing engine memory.
func (ev *Event) KeyString() string {
	if ev.cur != nil {
		return ev.cur.key()
	}
	return ev.prev.key()
}

// KV is the key after the change: for a put its new value and revisions,
// for a delete the key alone with ModRevision set to the deleting revision
// (etcd's shape).
func (ev *Event) KV() KeyValue {
	if ev.typ == EventPut {
		return ev.cur.kv(false)
	}
	return KeyValue{Key: ev.prev.keyBytes(), ModRevision: ev.rev}
}

// PrevKV is the key before the change, when it existed.
func (ev *Event) PrevKV() (KeyValue, bool) {
	if ev.prev == nil {
		return KeyValue{}, false
	}
	return ev.prev.kv(false), true
}

// Size approximates the memory an event keeps alive: its own 32 bytes and
// the entry it reports (for a delete, the removed one).
func (ev *Event) Size() int64 {
	const eventSize = 32
	if ev.cur != nil {
		return eventSize + ev.cur.size()
	}
	return eventSize + ev.prev.size()
}

// NewEvent builds an event outside the engine, for tests of the layers
// that consume events. kv.ModRevision is the event's revision.
func NewEvent(typ EventType, kv KeyValue, prev *KeyValue) Event {
	ev := Event{rev: kv.ModRevision, typ: typ}
	if prev != nil {
		ev.prev = newEntry(prev.Key, prev.Value, prev.CreateRevision, prev.ModRevision, prev.Version)
	}
	if typ == EventPut {
		ev.cur = newEntry(kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
	} else if ev.prev == nil {
		ev.prev = newEntry(kv.Key, nil, 0, 0, 0)
	}
	return ev
}

// Observer is told of every change the store applies. The store calls it
// from the writer goroutine while it holds its write lock, so the revision
// an observer has seen and what readers see never disagree; it must never
// block.
type Observer interface {
	// Committed reports the changes of revision rev, in the order they were
	// applied. events is reused after the call returns: keep the Events
	// (they are values), not the slice.
	Committed(rev int64, events []Event)
	// Reset reports that the store was replaced (Restore) and is now at
	// revision rev: changes up to rev were never reported.
	Reset(rev int64)
}

// SetObserver installs o (nil: none). Call it before the writer starts.
func (s *Store) SetObserver(o Observer) {
	s.mu.Lock()
	s.obs = o
	s.mu.Unlock()
}

// record notes one change for the observer; the removal and write
// primitives call it, so every path that changes a key reports it.
func (s *Store) record(typ EventType, rev int64, cur, prev *entry) {
	if s.obs == nil {
		return
	}
	if len(s.pending) > 0 && s.pending[0].rev != rev {
		// An apply path moved the revision without setRevision: hand its
		// changes over now, under their own revision, rather than mix
		// two revisions (CheckConsistency reports such a path).
		s.publish(s.pending[0].rev)
	}
	s.pending = append(s.pending, Event{rev: rev, typ: typ, cur: cur, prev: prev})
}

func (s *Store) publish(rev int64) {
	s.obs.Committed(rev, s.pending)
	clear(s.pending)
	s.pending = s.pending[:0]
}

// setRevision publishes rev as the store revision and hands the changes
// recorded since the last publication to the observer. Every apply path
// that moves the revision goes through it. Callers hold mu.
func (s *Store) setRevision(rev int64) {
	s.rev.Store(rev)
	if s.obs != nil && len(s.pending) > 0 {
		s.publish(rev)
	}
}
