package wal

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"

	"google.golang.org/protobuf/proto"
)

const (
	headerSize = 12
	// maxRecordSize bounds a payload so that a damaged length can never make
	// recovery allocate an absurd buffer; it is checked before allocation.
	maxRecordSize = 64 << 20

	recEntry     byte = 1
	recHardState byte = 2
	recSnapshot  byte = 3
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

var zeroHeader [headerSize]byte

// appendRecord encodes m as one record at the end of buf. On error buf is
// returned unchanged so a rejected batch leaves nothing half-encoded.
func appendRecord(buf []byte, typ byte, m proto.Message) ([]byte, error) {
	start := len(buf)
	buf = append(buf, zeroHeader[:]...)
	buf = append(buf, typ)
	out, err := proto.MarshalOptions{}.MarshalAppend(buf, m)
	if err != nil {
		return buf[:start], fmt.Errorf("wal: marshal record: %w", err)
	}
	buf = out
	n := len(buf) - start - headerSize
	if n > maxRecordSize {
		return buf[:start], fmt.Errorf("%w: payload of %d bytes exceeds %d", ErrRecordTooLarge, n, maxRecordSize)
	}
	h := buf[start : start+headerSize]
	binary.LittleEndian.PutUint32(h[0:4], uint32(n))
	binary.LittleEndian.PutUint32(h[4:8], crc32.Checksum(buf[start+headerSize:], crcTable))
	binary.LittleEndian.PutUint32(h[8:12], crc32.Checksum(h[:8], crcTable))
	return buf, nil
}

// decodeError classifies a bad record. torn means the damage is confined to
// the end of the file and is consistent with a crash during the last write;
// whether that is repairable is decided by the caller (only in the last
// segment).
type decodeError struct {
	offset int64
	torn   bool
	// zeros: nothing but zeros from offset to EOF, the space written ahead
	// of the records (Options.ZeroAhead) or a filesystem's extension: the
	// clean end of the records (torn is set too, for non-final segments).
	zeros  bool
	reason string
}

func (e *decodeError) Error() string { return e.reason }

// recordReader decodes records from one segment. size is the file size at
// open time; every length is validated against it and maxRecordSize before a
// buffer is grown, so a hostile file cannot cause large allocations.
type recordReader struct {
	r    *bufio.Reader
	size int64
	off  int64 // offset of the next record
	buf  []byte
}

func newRecordReader(r io.Reader, size int64) *recordReader {
	// A small segment (a fresh node's, a fuzz input) needs no 256 KiB buffer.
	bufSize := 256 << 10
	if size < int64(bufSize) {
		bufSize = max(int(size), 16)
	}
	return &recordReader{r: bufio.NewReaderSize(r, bufSize), size: size}
}

// next returns the payload of the next record (valid until the following
// call), io.EOF at a clean end, a *decodeError for a bad record, or an I/O
// error.
func (rr *recordReader) next() ([]byte, error) {
	remain := rr.size - rr.off
	if remain == 0 {
		return nil, io.EOF
	}
	if remain < headerSize {
		return nil, &decodeError{offset: rr.off, torn: true, reason: fmt.Sprintf("incomplete record header (%d of %d bytes)", remain, headerSize)}
	}
	var h [headerSize]byte
	if _, err := io.ReadFull(rr.r, h[:]); err != nil {
		return nil, fmt.Errorf("wal: read record header: %w", err)
	}
	n := binary.LittleEndian.Uint32(h[0:4])
	end := rr.off + headerSize + int64(n)
	if crc32.Checksum(h[:8], crcTable) != binary.LittleEndian.Uint32(h[8:12]) {
		// With a bad header the length is untrustworthy, so it is only a torn
		// write if nothing follows that could be acknowledged data: either no
		// payload bytes at all, or exactly the claimed payload up to EOF.
		torn := remain == headerSize || end == rr.size
		if !torn {
			// Zeros up to EOF after a zero header are space written ahead
			// of the records, or a filesystem that extended the file
			// before the data reached the disk (a crash then leaves a
			// zero-filled tail); after a damaged header, a record torn by
			// a crash in that space. Neither holds anything acknowledged.
			zeros, err := rr.restIsZero(remain - headerSize)
			if err != nil {
				return nil, err
			}
			if zeros && h == [headerSize]byte{} {
				return nil, &decodeError{offset: rr.off, torn: true, zeros: true, reason: "zero-filled tail"}
			}
			torn = zeros
		}
		return nil, &decodeError{offset: rr.off, torn: torn, reason: "header checksum mismatch"}
	}
	if n == 0 || n > maxRecordSize {
		return nil, &decodeError{offset: rr.off, reason: fmt.Sprintf("invalid payload length %d", n)}
	}
	if end > rr.size {
		return nil, &decodeError{offset: rr.off, torn: true, reason: fmt.Sprintf("incomplete payload (%d of %d bytes)", remain-headerSize, n)}
	}
	if cap(rr.buf) < int(n) {
		rr.buf = make([]byte, n)
	}
	p := rr.buf[:n]
	if _, err := io.ReadFull(rr.r, p); err != nil {
		return nil, fmt.Errorf("wal: read record payload: %w", err)
	}
	if crc32.Checksum(p, crcTable) != binary.LittleEndian.Uint32(h[4:8]) {
		// Torn: the last record, or followed only by zeros (a record cut
		// short by a crash in space written ahead).
		torn := end == rr.size
		if !torn {
			zeros, err := rr.restIsZero(rr.size - end)
			if err != nil {
				return nil, err
			}
			torn = zeros
		}
		return nil, &decodeError{offset: rr.off, torn: torn, reason: "payload checksum mismatch"}
	}
	rr.off = end
	return p, nil
}

// restIsZero reads the next n bytes and reports whether all are zero.
func (rr *recordReader) restIsZero(n int64) (bool, error) {
	var chunk [32 << 10]byte
	for n > 0 {
		k := int64(len(chunk))
		if n < k {
			k = n
		}
		if _, err := io.ReadFull(rr.r, chunk[:k]); err != nil {
			return false, fmt.Errorf("wal: read record tail: %w", err)
		}
		for _, b := range chunk[:k] {
			if b != 0 {
				return false, nil
			}
		}
		n -= k
	}
	return true, nil
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, crcTable) }
