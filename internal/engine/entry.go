package engine

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"
)

// entry is one key's current state, in a single pointer-free allocation:
//
//	access u32 | vlen u32 | klen u32 | tlen u8 | key | value | tail
//
// where the tail is the revisions as the snapshot encodes them (varint
// create, mod, version; snapshot.go), followed by the key's deadline (varint
// unix milliseconds) when tlen has flagDeadline and its lease (varint id)
// when tlen has flagLease; tlen's low six bits are the tail's length. A key
// without a deadline or lease costs exactly what it did before either
// existed. One malloc per put, no
// pointers for the garbage collector to scan, no padding, and the key at a
// fixed offset: a 16-byte key with a 100-byte value and revisions under
// 2^20 takes 13 + 116 + 7 bytes, the 144-byte size class.
//
// An entry is immutable once published: a modification installs a new
// entry. Snapshots share entries with the live tree, so mutating one in place
// would corrupt every snapshot holding it. The one exception is access, a
// recency hint outside the replicated state (never hashed, snapshotted or
// compared), written atomically by readers: the store revision (truncated to
// 32 bits) at the entry's last write or Get, the clock of approximate LRU
// eviction.
type entry struct {
	access atomic.Uint32
	vlen   uint32
	klen   uint32
	tlen   uint8
	// key, value and tail follow
}

const entryHeader = 13 // unsafe.Offsetof(entry{}.tlen) + 1: the struct's padding is not allocated

// The flags of tlen: the tail also holds a deadline, a lease. The tail is
// at most 5 varints of 10 bytes, under tlenMask.
const (
	flagDeadline = 0x40
	flagLease    = 0x80
	tlenMask     = 0x3f
	flagsMask    = flagDeadline | flagLease
)

// IndexOverhead is the heap the hash index and the B-tree spend per key:
// an 8-byte pointer and a 1-byte tag per hash slot at a load between 9/16
// and 7/8, and an 8-byte item per B-tree slot at the tree's fill. Measured by
// BenchmarkHeapPerKey (1M keys): ~13 B for the index, ~11 B for the tree.
const IndexOverhead = 24

// EntryOverhead is the typical heap cost of one entry beyond its key and
// value bytes, for sizing estimates: the 8-byte header, the record's
// varints and size-class rounding (~12-28 B), plus IndexOverhead. The
// store's MemoryUsage counts each entry exactly by entrySize.
const EntryOverhead = 48

// entrySize is what an entry adds to MemoryUsage: its allocation rounded
// up to 16 bytes (the malloc size classes' step in this range) plus the
// index's share. It depends only on the entry's contents, so it is the same
// on every replica.
func entrySize(klen, vlen, tlen int) int64 {
	return int64((entryHeader+klen+vlen+tlen+15)&^15) + IndexOverhead
}

// EntryGrowth is the most a put of a klen-byte key and a vlen-byte value
// adds to MemoryUsage, for revisions and versions below 2^34 (five varint
// bytes each): every store this engine will hold.
func EntryGrowth(klen, vlen int) int64 { return entrySize(klen, vlen, 15) }

// EntryGrowthMeta is EntryGrowth for a put that also carries a deadline
// and a lease (ten varint bytes each at most).
func EntryGrowthMeta(klen, vlen int) int64 { return entrySize(klen, vlen, 35) }

// RewriteGrowth is the most a put can add to MemoryUsage when it replaces
// an existing entry with one whose key and value together are at most grow
// bytes longer, whatever revisions, deadline and lease either carries: the
// tail grows at most from its least (three one-byte revisions) to
// EntryGrowthMeta's 35 bytes, and the index's share does not change. It is
// never more than EntryGrowth(klen, grow) for any klen, the most a put of a
// key that did not exist adds with a grow-byte value.
func RewriteGrowth(grow int) int64 { return int64((max(grow, 0) + 35 - 3 + 15) &^ 15) }

func (e *entry) tailLen() int { return int(e.tlen & tlenMask) }

func (e *entry) flags() uint8 { return e.tlen & flagsMask }

func (e *entry) size() int64 { return entrySize(int(e.klen), int(e.vlen), e.tailLen()) }

func (e *entry) at(off int) *byte { return (*byte)(unsafe.Add(unsafe.Pointer(e), off)) }

// keyBytes exposes the entry's key as a []byte without copying. Callers must
// treat it as read-only; KeyValue documents that contract.
func (e *entry) keyBytes() []byte {
	return unsafe.Slice(e.at(entryHeader), e.klen)
}

// key is the entry's key as a string aliasing the entry.
func (e *entry) key() string { return unsafe.String(e.at(entryHeader), e.klen) }

// value returns the value bytes. An empty value is an empty, non-nil slice.
func (e *entry) value() []byte {
	return unsafe.Slice(e.at(entryHeader+int(e.klen)), e.vlen)
}

func (e *entry) tail() []byte {
	return unsafe.Slice(e.at(entryHeader+int(e.klen)+int(e.vlen)), e.tailLen())
}

// meta decodes the deadline (unix ms, 0: none) and lease (0: none).
func (e *entry) meta() (deadline, lease int64) {
	if e.flags() == 0 {
		return 0, 0
	}
	t := e.tail()
	_, t = varint(t)
	_, t = varint(t)
	_, t = varint(t)
	if e.tlen&flagDeadline != 0 {
		deadline, t = varint(t)
	}
	if e.tlen&flagLease != 0 {
		lease, _ = varint(t)
	}
	return deadline, lease
}

func (e *entry) deadline() int64 {
	d, _ := e.meta()
	return d
}

// revisions decodes the tail.
func (e *entry) revisions() (create, mod, version int64) {
	t := e.tail()
	create, t = varint(t)
	mod, t = varint(t)
	version, _ = varint(t)
	return
}

// varint decodes one zigzag varint written by binary.AppendVarint; the
// tail is the engine's own encoding, so it is well formed.
func varint(b []byte) (int64, []byte) {
	var ux uint64
	var s uint
	for i, c := range b {
		if c < 0x80 {
			ux |= uint64(c) << s
			x := int64(ux >> 1)
			if ux&1 != 0 {
				x = ^x
			}
			return x, b[i+1:]
		}
		ux |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, nil
}

func (e *entry) create() int64 {
	c, _, _ := e.revisions()
	return c
}

func (e *entry) mod() int64 {
	_, m, _ := e.revisions()
	return m
}

func (e *entry) version() int64 {
	_, _, v := e.revisions()
	return v
}

func (e *entry) kv(keysOnly bool) KeyValue {
	c, m, v := e.revisions()
	kv := KeyValue{Key: e.keyBytes(), CreateRevision: c, ModRevision: m, Version: v}
	kv.Deadline, kv.Lease = e.meta()
	if !keysOnly {
		kv.Value = e.value()
	}
	return kv
}

// appendRecord appends the entry's snapshot encoding (format 2): uvarint
// klen, key, uvarint vlen, value, one byte of flags, the tail.
func (e *entry) appendRecord(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(e.klen))
	dst = append(dst, e.keyBytes()...)
	dst = binary.AppendUvarint(dst, uint64(e.vlen))
	dst = append(dst, e.value()...)
	dst = append(dst, e.flags())
	return append(dst, e.tail()...)
}

func tailSize(create, mod, version int64) int {
	return varintLen(create) + varintLen(mod) + varintLen(version)
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func varintLen(x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}

// newEntry builds an entry: one allocation holding key, value and
// revisions. A new buffer is used even on overwrite so the old value bytes
// can be collected.
func newEntry(key, value []byte, create, mod, version int64) *entry {
	return newEntryMeta(key, value, create, mod, version, 0, 0)
}

// newEntryMeta is newEntry for a key that may carry a deadline (unix ms)
// and a lease; zero means none and costs nothing.
func newEntryMeta(key, value []byte, create, mod, version, deadline, lease int64) *entry {
	tlen := tailSize(create, mod, version)
	var flags uint8
	if deadline != 0 {
		tlen += varintLen(deadline)
		flags |= flagDeadline
	}
	if lease != 0 {
		tlen += varintLen(lease)
		flags |= flagLease
	}
	// A []byte allocation: no pointers inside, 8-byte aligned for every
	// size the header fits in.
	buf := make([]byte, entryHeader+len(key)+len(value)+tlen)
	e := (*entry)(unsafe.Pointer(unsafe.SliceData(buf)))
	e.vlen, e.klen, e.tlen = uint32(len(value)), uint32(len(key)), uint8(tlen)|flags
	r := append(buf[entryHeader:entryHeader], key...)
	r = append(r, value...)
	r = binary.AppendVarint(r, create)
	r = binary.AppendVarint(r, mod)
	r = binary.AppendVarint(r, version)
	if deadline != 0 {
		r = binary.AppendVarint(r, deadline)
	}
	if lease != 0 {
		_ = binary.AppendVarint(r, lease)
	}
	return e
}

// keyEntry is an entry holding key alone, for tree lookups.
func keyEntry(key []byte) *entry { return newEntry(key, nil, 0, 0, 0) }
