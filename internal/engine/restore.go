package engine

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// ErrCorruptSnapshot wraps every Restore failure, whatever its cause
// (including I/O errors from the reader, which are wrapped as well).
var ErrCorruptSnapshot = errors.New("engine: corrupt snapshot")

// readChunk bounds how much Restore allocates ahead of data actually read:
// a lying length field cannot make it allocate more than this before the
// stream runs out.
const readChunk = 1 << 20

// decoder reads the snapshot stream, checksumming exactly the bytes consumed
// (bufio reads ahead, so the CRC cannot be taken over raw reads).
type decoder struct {
	r   *bufio.Reader
	crc uint32
	one [1]byte // ReadByte's CRC input, kept here so it does not escape per call
	// scratch is where keys are read first, then copied once. It grows to
	// the longest key seen rather than starting at MaxKeySize, so decoding
	// a small snapshot allocates little.
	scratch []byte
	value   []byte // values up to readChunk, read here first, likewise
}

func (d *decoder) ReadByte() (byte, error) {
	b, err := d.r.ReadByte()
	if err != nil {
		return 0, err
	}
	d.one[0] = b
	d.crc = crc32.Update(d.crc, castagnoli, d.one[:])
	return b, nil
}

func (d *decoder) readFull(p []byte) error {
	if _, err := io.ReadFull(d.r, p); err != nil {
		return err
	}
	d.crc = crc32.Update(d.crc, castagnoli, p)
	return nil
}

// readBytes reads n bytes, growing the buffer chunk by chunk so allocation
// tracks data that is really present.
func (d *decoder) readBytes(n int) ([]byte, error) {
	b := make([]byte, 0, readChunk)
	for len(b) < n {
		c := min(n-len(b), readChunk)
		b = append(b, make([]byte, c)...)
		if err := d.readFull(b[len(b)-c:]); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func (d *decoder) uvarint(what string, limit uint64) (uint64, error) {
	v, err := binary.ReadUvarint(d)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	if v > limit {
		return 0, fmt.Errorf("%s %d exceeds limit %d", what, v, limit)
	}
	return v, nil
}

func (d *decoder) varint(what string) (int64, error) {
	v, err := binary.ReadVarint(d)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return v, nil
}

// Restore replaces the whole store (keys, revision, applied index, memory
// usage) with the state streamed by Snapshot.WriteTo. Everything is
// validated before the store is touched: magic, format version, length
// limits (checked before allocating), strictly increasing keys, per-entry
// revision sanity and the CRC32C trailer, with no trailing bytes allowed.
// On any error the store is unchanged and the error wraps ErrCorruptSnapshot.
//
// Restore must be called from the writer goroutine (not concurrently with
// Apply). Readers keep seeing the old state until the final swap.
func (s *Store) Restore(r io.Reader) error {
	st, err := decodeSnapshot(r)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCorruptSnapshot, err)
	}
	s.mu.Lock()
	s.m, s.tree, s.mem = st.m, st.tree, st.mem
	s.dl, s.leases = st.dl, st.leases
	s.rev.Store(st.rev.Load())
	s.applied.Store(st.applied.Load())
	if s.obs != nil {
		s.pending = s.pending[:0]
		s.obs.Reset(st.rev.Load())
	}
	s.mu.Unlock()
	return nil
}

// minEncodedEntry is the fewest bytes an entry takes in a snapshot: a
// one-byte key length, a one-byte key and a one-byte value length.
const minEncodedEntry = 3

// decodeSnapshot builds a detached store image from r; it never panics.
// VerifySnapshot reads a stream written by Snapshot.WriteTo and checks it
// as Restore does, without touching any store: a snapshot received from
// another member is checked before anything relies on it.
func VerifySnapshot(r io.Reader) error {
	if _, err := decodeSnapshot(r); err != nil {
		return fmt.Errorf("%w: %w", ErrCorruptSnapshot, err)
	}
	return nil
}

func decodeSnapshot(r io.Reader) (*Store, error) {
	// When r knows its length (a bytes.Reader: fuzzing, tests), size the
	// read buffer and the map hint to it, so a short stream whose header
	// claims many entries costs little.
	size := int64(-1)
	if l, ok := r.(interface{ Len() int }); ok {
		size = int64(l.Len())
	}
	bufSize := 64 << 10
	if size >= 0 && size < int64(bufSize) {
		bufSize = max(int(size), 16)
	}
	d := &decoder{r: bufio.NewReaderSize(r, bufSize)}
	var hdr [headerSize]byte
	if err := d.readFull(hdr[:]); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if string(hdr[:len(snapshotMagic)]) != snapshotMagic {
		return nil, errors.New("bad magic")
	}
	off := len(snapshotMagic)
	version := binary.BigEndian.Uint16(hdr[off:])
	if version != snapshotVersion && version != snapshotVersionV1 {
		return nil, fmt.Errorf("unsupported format version %d", version)
	}
	index := binary.BigEndian.Uint64(hdr[off+2:])
	rev := int64(binary.BigEndian.Uint64(hdr[off+10:]))
	count := binary.BigEndian.Uint64(hdr[off+18:])
	if rev < 0 {
		return nil, fmt.Errorf("negative revision %d", rev)
	}
	if count > 0 && rev == 0 {
		return nil, errors.New("entries at revision 0")
	}

	// The count is untrusted: cap the size hint so a lying header cannot
	// force a huge up-front allocation.
	hint := min(count, 1<<16)
	if size >= 0 {
		hint = min(hint, uint64(size)/minEncodedEntry)
	}
	st := &Store{m: newIndex(int(hint)), tree: newTree(), dl: newDeadlineTree(), leases: map[int64]*lease{}}
	st.rev.Store(rev)
	st.applied.Store(index)
	var prev *entry
	var withLease []*entry
	for i := uint64(0); i < count; i++ {
		e, err := d.entry(i, rev, version)
		if err != nil {
			return nil, err
		}
		if prev != nil && e.key() <= prev.key() {
			return nil, fmt.Errorf("entry %d: keys not strictly increasing", i)
		}
		st.m.set(e)
		// Keys arrive sorted, so Load (append-optimised Set) is cheap.
		st.tree.Load(e)
		st.mem += e.size()
		if e.flags() != 0 {
			withLease = append(withLease, e)
		}
		prev = e
	}
	if version != snapshotVersionV1 {
		if err := d.leases(st); err != nil {
			return nil, err
		}
	}
	for _, e := range withLease {
		dl, l := e.meta()
		if _, ok := st.leases[l]; l != 0 && !ok {
			return nil, fmt.Errorf("key %q attached to lease %d, which the snapshot does not hold", e.key(), l)
		}
		if dl != 0 && dl < 0 {
			return nil, fmt.Errorf("key %q has a negative deadline", e.key())
		}
		st.indexMeta(e)
	}

	want := d.crc
	var trailer [4]byte
	if _, err := io.ReadFull(d.r, trailer[:]); err != nil {
		return nil, fmt.Errorf("checksum: %w", err)
	}
	if got := binary.BigEndian.Uint32(trailer[:]); got != want {
		return nil, fmt.Errorf("checksum mismatch: stream %08x, computed %08x", got, want)
	}
	if _, err := d.r.ReadByte(); err != io.EOF {
		if err == nil {
			return nil, errors.New("trailing data after checksum")
		}
		return nil, fmt.Errorf("after checksum: %w", err)
	}
	return st, nil
}

// maxLeases bounds the lease count a snapshot may declare.
const maxLeases = 1 << 32

// leases reads the lease section: uint64 count, then varint id and varint
// TTL per lease, ids strictly increasing.
func (d *decoder) leases(st *Store) error {
	var hdr [8]byte
	if err := d.readFull(hdr[:]); err != nil {
		return fmt.Errorf("lease count: %w", err)
	}
	n := binary.BigEndian.Uint64(hdr[:])
	if n > maxLeases {
		return fmt.Errorf("lease count %d exceeds limit", n)
	}
	var prev int64
	for i := uint64(0); i < n; i++ {
		id, err := d.varint("lease id")
		if err != nil {
			return fmt.Errorf("lease %d: %w", i, err)
		}
		ttl, err := d.varint("lease ttl")
		if err != nil {
			return fmt.Errorf("lease %d: %w", i, err)
		}
		if id == 0 || (i > 0 && id <= prev) || ttl < 0 {
			return fmt.Errorf("lease %d: invalid id %d or ttl %d", i, id, ttl)
		}
		st.leases[id] = &lease{ttl: ttl}
		st.mem += LeaseOverhead
		prev = id
	}
	return nil
}

func (d *decoder) entry(i uint64, rev int64, format uint16) (*entry, error) {
	klen, err := d.uvarint("key length", MaxKeySize)
	if err != nil {
		return nil, fmt.Errorf("entry %d: %w", i, err)
	}
	if klen == 0 {
		return nil, fmt.Errorf("entry %d: empty key", i)
	}
	if uint64(cap(d.scratch)) < klen {
		d.scratch = make([]byte, max(klen, 256))
	}
	key := d.scratch[:klen]
	if err := d.readFull(key); err != nil {
		return nil, fmt.Errorf("entry %d key: %w", i, err)
	}
	vlen, err := d.uvarint("value length", MaxValueSize)
	if err != nil {
		return nil, fmt.Errorf("entry %d: %w", i, err)
	}
	var value []byte
	if vlen <= readChunk {
		if cap(d.value) < int(vlen) {
			d.value = make([]byte, vlen)
		}
		value = d.value[:vlen]
		if err := d.readFull(value); err != nil {
			return nil, fmt.Errorf("entry %d value: %w", i, err)
		}
	} else {
		// A large value is read in chunks first (bounded by the data
		// present), then copied once into the entry.
		if value, err = d.readBytes(int(vlen)); err != nil {
			return nil, fmt.Errorf("entry %d value: %w", i, err)
		}
	}
	var flags byte
	if format != snapshotVersionV1 {
		if flags, err = d.ReadByte(); err != nil {
			return nil, fmt.Errorf("entry %d flags: %w", i, err)
		}
		if flags&^flagsMask != 0 {
			return nil, fmt.Errorf("entry %d: unknown flags %#x", i, flags)
		}
	}
	create, err := d.varint("create revision")
	if err != nil {
		return nil, fmt.Errorf("entry %d: %w", i, err)
	}
	mod, err := d.varint("mod revision")
	if err != nil {
		return nil, fmt.Errorf("entry %d: %w", i, err)
	}
	version, err := d.varint("version")
	if err != nil {
		return nil, fmt.Errorf("entry %d: %w", i, err)
	}
	if create < 1 || mod < create || mod > rev || version < 1 {
		return nil, fmt.Errorf("entry %d: invalid revisions create=%d mod=%d version=%d (store revision %d)",
			i, create, mod, version, rev)
	}
	var deadline, leaseID int64
	if flags&flagDeadline != 0 {
		if deadline, err = d.varint("deadline"); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if deadline <= 0 {
			return nil, fmt.Errorf("entry %d: invalid deadline %d", i, deadline)
		}
	}
	if flags&flagLease != 0 {
		if leaseID, err = d.varint("lease"); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if leaseID == 0 {
			return nil, fmt.Errorf("entry %d: lease 0", i)
		}
	}
	e := newEntryMeta(key, value, create, mod, version, deadline, leaseID)
	// No read history survives a restore: recency starts at the last write.
	e.access.Store(uint32(mod))
	return e, nil
}
