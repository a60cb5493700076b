package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Magic opens every binary-protocol connection; the server's port mux uses
// it to tell the binary protocol apart from HTTP/1 and HTTP/2.
const Magic = "KVDB"

// Version is the protocol version this package speaks.
const Version = 1

// Sizes of the fixed parts of the protocol.
const (
	ClientHelloSize = 8  // magic, version, 3 reserved bytes
	ServerHelloSize = 16 // magic, version, hello status, 2 reserved, max frame u32, max in-flight u32
	HeaderSize      = 16 // length u32 + 12 bytes the length counts
	headerAfterLen  = HeaderSize - 4
)

// Defaults for the limits a server announces in its hello.
const (
	DefaultMaxFrameSize = 4<<20 + 64<<10 // a max-size request plus headroom
	DefaultMaxInFlight  = 1024
	// MaxResponseFrameSize bounds a response frame a client accepts.
	MaxResponseFrameSize = 64 << 20
)

// Errors returned by the decoders. They all mean "protocol violation".
var (
	ErrBadMagic       = errors.New("wire: bad magic")
	ErrBadVersion     = errors.New("wire: unsupported protocol version")
	ErrFrameTooLarge  = errors.New("wire: frame larger than the limit")
	ErrFrameTooShort  = errors.New("wire: frame shorter than its header")
	ErrReservedBits   = errors.New("wire: reserved header byte is not zero")
	ErrRequestStatus  = errors.New("wire: request frame with a non-zero status byte")
	ErrTruncated      = errors.New("wire: body truncated")
	ErrTrailingBytes  = errors.New("wire: trailing bytes after body")
	ErrUnknownOpcode  = errors.New("wire: unknown opcode")
	ErrBadBatchOpType = errors.New("wire: unknown batch op type")
)

// Hello status values of the server hello.
const (
	HelloOK                 = 0
	HelloUnsupportedVersion = 1
)

// AppendClientHello appends the 8-byte client hello for version.
func AppendClientHello(dst []byte, version uint8) []byte {
	return append(dst, Magic[0], Magic[1], Magic[2], Magic[3], version, 0, 0, 0)
}

// ParseClientHello checks a client hello and returns its version. A version
// other than Version is returned together with ErrBadVersion.
func ParseClientHello(b []byte) (uint8, error) {
	if len(b) < ClientHelloSize {
		return 0, ErrTruncated
	}
	if string(b[:4]) != Magic {
		return 0, ErrBadMagic
	}
	if b[4] != Version {
		return b[4], ErrBadVersion
	}
	return b[4], nil
}

// ServerHello is the server's answer to a client hello.
type ServerHello struct {
	Version      uint8
	Status       uint8 // HelloOK or HelloUnsupportedVersion
	MaxFrameSize uint32
	MaxInFlight  uint32
}

// AppendServerHello appends the 16-byte server hello.
func AppendServerHello(dst []byte, h ServerHello) []byte {
	dst = append(dst, Magic[0], Magic[1], Magic[2], Magic[3], h.Version, h.Status, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, h.MaxFrameSize)
	return binary.BigEndian.AppendUint32(dst, h.MaxInFlight)
}

// ParseServerHello decodes a server hello.
func ParseServerHello(b []byte) (ServerHello, error) {
	if len(b) < ServerHelloSize {
		return ServerHello{}, ErrTruncated
	}
	if string(b[:4]) != Magic {
		return ServerHello{}, ErrBadMagic
	}
	h := ServerHello{
		Version: b[4], Status: b[5],
		MaxFrameSize: binary.BigEndian.Uint32(b[8:]),
		MaxInFlight:  binary.BigEndian.Uint32(b[12:]),
	}
	if h.Status == HelloUnsupportedVersion {
		return h, ErrBadVersion
	}
	return h, nil
}

// Frame is one decoded frame. Body aliases the Reader's buffer.
type Frame struct {
	Op     Opcode
	Flags  uint8
	Status Status
	ID     uint64
	Body   []byte
}

// appendHeader appends a header for a body of bodyLen bytes.
func appendHeader(dst []byte, op Opcode, flags uint8, st Status, id uint64, bodyLen int) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(headerAfterLen+bodyLen))
	dst = append(dst, byte(op), flags, byte(st), 0)
	return binary.BigEndian.AppendUint64(dst, id)
}

// beginFrame appends a header with a placeholder length; finishFrame fills
// it in once the body is appended. start is len(dst) before beginFrame.
func beginFrame(dst []byte, op Opcode, flags uint8, st Status, id uint64) []byte {
	return appendHeader(dst, op, flags, st, id, 0)
}

func finishFrame(dst []byte, start int) []byte {
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// ParseFrame decodes one complete frame from b (which must hold exactly the
// frame) without copying. maxFrame bounds the length field.
func ParseFrame(b []byte, maxFrame int) (Frame, error) {
	if len(b) < HeaderSize {
		return Frame{}, ErrFrameTooShort
	}
	n := int(binary.BigEndian.Uint32(b))
	if n+4 > maxFrame {
		return Frame{}, ErrFrameTooLarge
	}
	if n < headerAfterLen {
		return Frame{}, ErrFrameTooShort
	}
	if n+4 != len(b) {
		return Frame{}, ErrTruncated
	}
	return parseHeader(b)
}

func parseHeader(b []byte) (Frame, error) {
	f := Frame{Op: Opcode(b[4]), Flags: b[5], Status: Status(b[6]), ID: binary.BigEndian.Uint64(b[8:16]), Body: b[HeaderSize:]}
	if b[7] != 0 {
		return f, ErrReservedBits
	}
	return f, nil
}

// Budget accounts for the memory Readers hold beyond their initial buffers,
// typically one shared by every connection of a server. Acquire blocks until
// n bytes are free (backpressure: the reader stops reading meanwhile) or
// fails, and the read fails with its error; Release returns bytes acquired.
type Budget interface {
	Acquire(n int) error
	Release(n int)
}

// Reader reads frames from a stream into a reusable buffer. Memory follows
// the bytes that arrived, never a declared length alone: a frame larger than
// the initial buffer grows it at most twofold per full buffer, up to the
// frame's size, so a peer that declares a large frame and stalls holds at
// most about twice what it sent. The large buffer is dropped again once the
// frame is consumed. Not safe for concurrent use.
type Reader struct {
	r          io.Reader
	buf        []byte
	small      []byte // the initial buffer, kept while a larger one is in use
	start, end int
	max        int
	budget     Budget
	reserved   int // bytes acquired from budget for len(buf) > len(small)
}

// NewReader returns a Reader with an initial buffer of bufSize bytes that
// accepts frames of at most maxFrame bytes (header included).
func NewReader(r io.Reader, bufSize, maxFrame int) *Reader {
	if bufSize < HeaderSize {
		bufSize = HeaderSize
	}
	b := make([]byte, bufSize)
	return &Reader{r: r, buf: b, small: b, max: maxFrame}
}

// SetBudget makes the Reader acquire from b, before growing past its initial
// buffer, the bytes the frame in progress needs beyond it (all at once, so
// readers waiting for a budget never hold part of it), and release them when
// it shrinks back. Call it before the first Next.
func (r *Reader) SetBudget(b Budget) { r.budget = b }

// Close releases what the Reader holds of its budget and its large buffer.
func (r *Reader) Close() {
	r.buf, r.start, r.end = r.small, 0, 0
	r.releaseBudget()
}

func (r *Reader) releaseBudget() {
	if r.reserved > 0 && r.budget != nil {
		r.budget.Release(r.reserved)
	}
	r.reserved = 0
}

// BufferSize is the size of the Reader's buffer: its initial size, or more
// while a large frame is being read or consumed.
func (r *Reader) BufferSize() int { return len(r.buf) }

// Buffered is the number of bytes read from the stream but not yet returned
// as frames: when it is 0 the next Next blocks on the stream.
func (r *Reader) Buffered() int { return r.end - r.start }

// settle goes back to the initial buffer once the previous frame, which may
// have needed a larger one, is consumed, unless the bytes already buffered
// start another frame that needs the larger buffer too.
func (r *Reader) settle() {
	if len(r.buf) == len(r.small) {
		return
	}
	n := r.end - r.start
	if n > len(r.small) {
		return
	}
	if n >= 4 && int(binary.BigEndian.Uint32(r.buf[r.start:]))+4 > len(r.small) {
		return
	}
	r.end = copy(r.small, r.buf[r.start:r.end])
	r.start = 0
	r.buf = r.small
	r.releaseBudget()
}

// fill makes at least n bytes available at r.buf[r.start:].
func (r *Reader) fill(n int) error {
	if r.end-r.start >= n {
		return nil
	}
	if r.start+n > len(r.buf) && r.start > 0 {
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
	if n > len(r.buf) && r.budget != nil {
		if want := n - len(r.small); want > r.reserved {
			if err := r.budget.Acquire(want - r.reserved); err != nil {
				return err
			}
			r.reserved = want
		}
	}
	for r.end-r.start < n {
		if r.end == len(r.buf) {
			// Full and the frame needs more: grow by what arrived.
			nb := make([]byte, min(n, 2*len(r.buf)))
			r.end = copy(nb, r.buf[:r.end])
			r.buf = nb
		}
		m, err := r.r.Read(r.buf[r.end:])
		r.end += m
		if r.end-r.start >= n {
			return nil
		}
		if err != nil {
			if err == io.EOF && r.end > r.start {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// Fill blocks until at least one byte is buffered: a server calls it with
// its idle deadline to wait for a frame's first bytes, then gives the rest
// of the frame a shorter one.
func (r *Reader) Fill() error {
	if r.end > r.start {
		return nil
	}
	r.settle()
	return r.fill(1)
}

// Next returns the next frame. Its Body is valid until the following call.
// A length field over the limit yields ErrFrameTooLarge, and one under the
// header size ErrFrameTooShort, before anything is read or allocated for the
// frame; the Frame is then zero.
func (r *Reader) Next() (Frame, error) {
	r.settle()
	if err := r.fill(4); err != nil {
		return Frame{}, err
	}
	n := int(binary.BigEndian.Uint32(r.buf[r.start:]))
	if n+4 > r.max || n+4 < 0 {
		return Frame{}, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n+4, r.max)
	}
	if n < headerAfterLen {
		return Frame{}, fmt.Errorf("%w: length field %d < %d", ErrFrameTooShort, n, headerAfterLen)
	}
	if err := r.fill(n + 4); err != nil {
		return Frame{}, err
	}
	b := r.buf[r.start : r.start+n+4]
	r.start += n + 4
	if r.start == r.end {
		r.start, r.end = 0, 0
	}
	return parseHeader(b)
}

// HasFrame reports whether a whole frame is already buffered, so Next will
// not touch the stream.
func (r *Reader) HasFrame() bool {
	if r.end-r.start < 4 {
		return false
	}
	n := int(binary.BigEndian.Uint32(r.buf[r.start:]))
	return r.end-r.start >= n+4
}

// NeedsInput reports whether Next must read the stream before it returns:
// no whole frame is buffered, and the bytes that are do not already show a
// length Next refuses. An event loop reads a connection only then.
func (r *Reader) NeedsInput() bool {
	if r.HasFrame() {
		return false
	}
	if r.end-r.start < 4 {
		return true
	}
	n := int(binary.BigEndian.Uint32(r.buf[r.start:]))
	return n+4 <= r.max && n+4 >= 0 && n >= headerAfterLen
}
