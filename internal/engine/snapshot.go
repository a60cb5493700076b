package engine

import (
	"bufio"
	"encoding/binary"
	"hash"
	"hash/crc32"
	"io"

	"github.com/tidwall/btree"
)

const (
	snapshotMagic   = "KVDBSNAP"
	snapshotVersion = uint16(2)
	// snapshotVersionV1 is the format before deadlines and leases: no
	// flags byte per record, no lease section. Restore still reads it.
	snapshotVersionV1 = uint16(1)
	headerSize        = len(snapshotMagic) + 2 + 8 + 8 + 8

	// MaxKeySize is the largest key the snapshot format (and ValidateOp)
	// accepts.
	MaxKeySize = 64 << 10
	// MaxValueSize is the largest value the snapshot format (and ValidateOp)
	// accepts.
	MaxValueSize = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Snapshot is an immutable point-in-time image of a Store. It is safe for
// concurrent use and never blocks the store: it holds a copy-on-write clone
// of the B-tree, whose entries are immutable. Holding a Snapshot pins the old
// entries in memory until it is dropped.
type Snapshot struct {
	tree   *btree.BTreeG[*entry]
	index  uint64
	rev    int64
	mem    int64
	leases []LeaseInfo
}

// Snapshot captures the current state in O(1): it takes the write lock only
// long enough to clone the tree root (btree.Copy marks nodes shared; later
// writes to the live tree copy the nodes they touch).
func (s *Store) Snapshot() *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &Snapshot{
		tree:  s.tree.Copy(),
		index: s.applied.Load(),
		rev:   s.rev.Load(),
		mem:   s.mem,
		// The lease table is small beside the keys (an id and a TTL per
		// lease); it is copied, the keys are shared.
		leases: s.leaseList(),
	}
}

// Index returns the raft applied index the snapshot was taken at.
func (sn *Snapshot) Index() uint64 { return sn.index }

// Revision returns the store revision the snapshot was taken at.
func (sn *Snapshot) Revision() int64 { return sn.rev }

// Len returns the number of keys in the snapshot.
func (sn *Snapshot) Len() int { return sn.tree.Len() }

// MemoryUsage returns the store's MemoryUsage at snapshot time.
func (sn *Snapshot) MemoryUsage() int64 { return sn.mem }

// Hash returns the same value Store.Hash returned when the snapshot was taken.
func (sn *Snapshot) Hash() uint64 { return hashTree(sn.tree, sn.rev, sn.leases) }

// crcWriter feeds every byte written through it into a running CRC.
type crcWriter struct {
	w   *bufio.Writer
	crc hash.Hash32
	n   int64
	err error
}

func (cw *crcWriter) write(p []byte) {
	if cw.err != nil {
		return
	}
	cw.crc.Write(p)
	n, err := cw.w.Write(p)
	cw.n += int64(n)
	cw.err = err
}

// WriteTo streams the snapshot in the format documented in the package doc.
// It writes through a bufio.Writer entry by entry, so memory use does not
// grow with the dataset. It may be called more than once and concurrently.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &crcWriter{w: bufio.NewWriterSize(w, 64<<10), crc: crc32.New(castagnoli)}
	var hdr [headerSize]byte
	copy(hdr[:], snapshotMagic)
	off := len(snapshotMagic)
	binary.BigEndian.PutUint16(hdr[off:], snapshotVersion)
	binary.BigEndian.PutUint64(hdr[off+2:], sn.index)
	binary.BigEndian.PutUint64(hdr[off+10:], uint64(sn.rev))
	binary.BigEndian.PutUint64(hdr[off+18:], uint64(sn.tree.Len()))
	cw.write(hdr[:])

	var rec []byte
	sn.tree.Scan(func(e *entry) bool {
		rec = e.appendRecord(rec[:0])
		cw.write(rec)
		return cw.err == nil
	})
	rec = binary.BigEndian.AppendUint64(rec[:0], uint64(len(sn.leases)))
	for _, l := range sn.leases {
		rec = binary.AppendVarint(rec, l.ID)
		rec = binary.AppendVarint(rec, l.TTL)
	}
	cw.write(rec)
	if cw.err != nil {
		return cw.n, cw.err
	}
	var trailer [4]byte
	binary.BigEndian.PutUint32(trailer[:], cw.crc.Sum32())
	n, err := cw.w.Write(trailer[:])
	cw.n += int64(n)
	if err != nil {
		return cw.n, err
	}
	return cw.n, cw.w.Flush()
}
