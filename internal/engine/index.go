package engine

import (
	"hash/maphash"
	"unsafe"
)

// index is the store's hash index from key to entry: open addressing with
// linear probing over two parallel arrays, a 1-byte tag per slot (0 empty,
// 1 deleted, 0x80 | seven bits of the hash when used) and the entry pointer.
// The key lives in the entry, so a slot costs 9 bytes where a
// map[string]*entry costs a 16-byte string header, an 8-byte pointer and a
// control byte; the tag keeps probes from touching entries that cannot
// match. Capacity is any size (positions by multiply-shift), grown to a
// load of 9/16 when it would pass 7/8. Not safe for concurrent writes; the
// Store's lock guards it.
type index struct {
	seed   maphash.Seed
	groups []group
	size   int // slots: len(groups)*8 rounded down to the capacity in use
	live   int // entries
	used   int // entries and deleted markers
}

// group keeps eight tags beside their eight pointers, so a probe's tag and
// the pointer it leads to share a cache line.
type group struct {
	tags  [8]uint8
	slots [8]*entry
}

func (x *index) tag(i int) *uint8   { return &x.groups[i>>3].tags[i&7] }
func (x *index) slot(i int) **entry { return &x.groups[i>>3].slots[i&7] }

const (
	tagEmpty   = 0
	tagDeleted = 1
)

func newIndex(hint int) index {
	x := index{seed: maphash.MakeSeed()}
	x.resize(hint)
	return x
}

func (x *index) len() int { return x.live }

func (x *index) hash(key string) uint64 { return maphash.String(x.seed, key) }

func (x *index) home(h uint64) int { return int((h & 0xffffffff) * uint64(x.size) >> 32) }

func tagOf(h uint64) uint8 { return uint8(h>>57) | 0x80 }

// find returns the slot holding key, or -1.
func (x *index) find(key string, h uint64) int {
	if x.size == 0 {
		return -1
	}
	t := tagOf(h)
	for i := x.home(h); ; {
		g := &x.groups[i>>3]
		switch g.tags[i&7] {
		case tagEmpty:
			return -1
		case t:
			if g.slots[i&7].key() == key {
				return i
			}
		}
		if i++; i == x.size {
			i = 0
		}
	}
}

// get returns key's entry.
func (x *index) get(key string) (*entry, bool) {
	i := x.find(key, x.hash(key))
	if i < 0 {
		return nil, false
	}
	return *x.slot(i), true
}

// getBytes is get for a key in a byte slice, which it does not retain.
func (x *index) getBytes(key []byte) (*entry, bool) {
	return x.get(unsafe.String(unsafe.SliceData(key), len(key)))
}

// set makes e the entry of its key, replacing any other.
func (x *index) set(e *entry) {
	key := e.key()
	h := x.hash(key)
	x.setAt(x.find(key, h), h, e)
}

// lookup returns the slot holding key (-1: none) and key's hash, for a
// setAt that follows with no other change to the index between them.
func (x *index) lookup(key []byte) (int, uint64) {
	k := unsafe.String(unsafe.SliceData(key), len(key))
	h := x.hash(k)
	return x.find(k, h), h
}

// setAt puts e, whose key hashes to h, in slot i found by lookup or find,
// or, when i < 0, in a new slot.
func (x *index) setAt(i int, h uint64, e *entry) {
	if i >= 0 {
		*x.slot(i) = e
		return
	}
	if (x.used+1)*8 > x.size*7 {
		x.resize(x.live + 1)
	}
	i = x.home(h)
	for *x.tag(i) > tagDeleted {
		if i++; i == x.size {
			i = 0
		}
	}
	if *x.tag(i) == tagEmpty {
		x.used++
	}
	*x.tag(i), *x.slot(i) = tagOf(h), e
	x.live++
}

// del removes key's entry, if any.
func (x *index) del(key string) {
	i := x.find(key, x.hash(key))
	if i < 0 {
		return
	}
	*x.slot(i) = nil
	x.live--
	// A slot followed by an empty one ends every probe sequence through
	// it, so it can be empty again rather than a deleted marker.
	if *x.tag((i + 1) % x.size) == tagEmpty {
		*x.tag(i) = tagEmpty
		x.used--
	} else {
		*x.tag(i) = tagDeleted
	}
	if x.live*8 < x.size && x.size > 64 {
		x.resize(x.live)
	}
}

// resize rehashes into a table where n entries fill 9/16 of the slots,
// dropping deleted markers.
func (x *index) resize(n int) {
	old, oldSize := x.groups, x.size
	size := max(8, n*16/9+1)
	x.groups, x.size = make([]group, (size+7)/8), size
	x.used = 0
	for i := range oldSize {
		g := &old[i>>3]
		if g.tags[i&7] <= tagDeleted {
			continue
		}
		e := g.slots[i&7]
		h := x.hash(e.key())
		j := x.home(h)
		for *x.tag(j) != tagEmpty {
			if j++; j == size {
				j = 0
			}
		}
		*x.tag(j), *x.slot(j) = tagOf(h), e
		x.used++
	}
}
