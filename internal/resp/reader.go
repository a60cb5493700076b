package resp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ErrProtocol matches every malformed-request error; the connection that
// sent it is answered with the error and closed, as Redis does.
var ErrProtocol = errors.New("Protocol error")

// protoError is a protocol error with Redis's wording.
type protoError struct{ msg string }

func (e *protoError) Error() string        { return "Protocol error: " + e.msg }
func (e *protoError) Is(target error) bool { return target == ErrProtocol }

func protoErrorf(format string, args ...any) error {
	return &protoError{msg: fmt.Sprintf(format, args...)}
}

// ErrTooLarge is a request larger than the Reader's MaxRequest.
var ErrTooLarge = &protoError{msg: "request is larger than the server's max-request-size"}

// Limits bound what a Reader accepts.
type Limits struct {
	// MaxBulk is the largest bulk string (one argument).
	MaxBulk int
	// MaxArgs is the most arguments one command may have.
	MaxArgs int
	// MaxRequest is the most bytes one command may take on the wire; the
	// read buffer never grows past it (plus one read's worth).
	MaxRequest int
	// Inline accepts inline commands (a line of space-separated words, as
	// telnet sends); without it a request must be a RESP array.
	Inline bool
}

// maxInline bounds an inline command's line, and maxHeader the digits of a
// length line (Redis's own limits are similar).
const (
	maxInline = 64 << 10
	maxHeader = 32
)

// Reader parses commands from a connection. Not safe for concurrent use.
type Reader struct {
	rd      io.Reader
	lim     Limits
	initial int
	buf     []byte
	r, w    int // buf[r:w] is read and not yet parsed
	args    [][]byte
	// returned: args holds the last command Next returned, which its
	// caller is done with once Next is called again.
	returned bool
}

// keepArgs is the most argument slots a Reader keeps between commands: a
// command with more (a large MSET) gets its own, let go after it.
const keepArgs = 1024

// NewReader reads from rd with an initial buffer of size bytes.
func NewReader(rd io.Reader, size int, lim Limits) *Reader {
	if size < 64 {
		size = 64
	}
	return &Reader{rd: rd, lim: lim, initial: size, buf: make([]byte, size)}
}

// Buffered is the number of bytes read and not yet parsed.
func (r *Reader) Buffered() int { return r.w - r.r }

// Next parses the next command from what is buffered, without reading. ok
// is false when no complete command is buffered (call Fill). The
// arguments alias the Reader's buffer: they are valid until the next call
// of Next or Fill. An empty command (*0, a blank inline line) is skipped.
// An error (matching ErrProtocol) means the stream cannot be parsed further.
func (r *Reader) Next() (args [][]byte, ok bool, err error) {
	if r.returned && cap(r.args) > keepArgs {
		r.args = nil
	}
	r.returned = false
	for {
		args, n, err := r.parse(r.buf[r.r:r.w])
		if err != nil || n == 0 {
			return nil, false, err
		}
		r.r += n
		if r.r == r.w {
			r.r, r.w = 0, 0
		}
		if len(args) > 0 {
			r.returned = true
			return args, true, nil
		}
	}
}

// Fill reads more bytes: at least one, or an error. It makes room first,
// moving the unparsed bytes to the front and growing the buffer (up to the
// request limit) only when a partial command fills it.
func (r *Reader) Fill() error {
	if r.r > 0 {
		copy(r.buf, r.buf[r.r:r.w])
		r.w -= r.r
		r.r = 0
	}
	if r.w == 0 && len(r.buf) > 4*r.initial {
		r.buf = make([]byte, r.initial) // let a large request's buffer go
	}
	if r.w == len(r.buf) {
		if len(r.buf) >= r.lim.MaxRequest+maxHeader*4 {
			return ErrTooLarge
		}
		nb := make([]byte, min(2*len(r.buf), r.lim.MaxRequest+maxHeader*4))
		copy(nb, r.buf[:r.w])
		r.buf = nb
	}
	for range 100 {
		n, err := r.rd.Read(r.buf[r.w:])
		r.w += n
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// parse reads one command from b: its arguments and the bytes it took, or
// n == 0 when b holds only part of it.
func (r *Reader) parse(b []byte) ([][]byte, int, error) {
	if len(b) == 0 {
		return nil, 0, nil
	}
	if b[0] != '*' {
		if !r.lim.Inline {
			return nil, 0, protoErrorf("expected '*', got '%s'", printable(b[0]))
		}
		return r.parseInline(b)
	}
	count, n, err := readLength(b, 1)
	if err != nil || n == 0 {
		if err != nil {
			err = protoErrorf("invalid multibulk length")
		}
		return nil, 0, err
	}
	if count > int64(r.lim.MaxArgs) {
		return nil, 0, protoErrorf("too many arguments in one command: at most %d", r.lim.MaxArgs)
	}
	if count < -1 {
		return nil, 0, protoErrorf("invalid multibulk length")
	}
	args := r.args[:0]
	pos := n
	for i := int64(0); i < count; i++ {
		if pos >= len(b) {
			r.args = args
			return nil, 0, nil
		}
		if b[pos] != '$' {
			return nil, 0, protoErrorf("expected '$', got '%s'", printable(b[pos]))
		}
		size, m, err := readLength(b[pos:], 1)
		if err != nil || size < 0 || size > int64(r.lim.MaxBulk) {
			return nil, 0, protoErrorf("invalid bulk length")
		}
		if m == 0 {
			r.args = args
			return nil, 0, nil
		}
		start := pos + m
		end := start + int(size)
		if end+2 > len(b) {
			if start-n > r.lim.MaxRequest {
				return nil, 0, ErrTooLarge
			}
			r.args = args
			return nil, 0, nil
		}
		if b[end] != '\r' || b[end+1] != '\n' {
			return nil, 0, protoErrorf("bulk string not terminated by CRLF")
		}
		args = append(args, b[start:end:end])
		pos = end + 2
	}
	r.args = args
	return args, pos, nil
}

// readLength reads the decimal length line after b[:skip] ("*3\r\n"): the
// number and the bytes up to and including CRLF; n == 0 when the line is
// not all there yet.
func readLength(b []byte, skip int) (v int64, n int, err error) {
	end := bytes.IndexByte(b[skip:min(len(b), skip+maxHeader)], '\n')
	if end < 0 {
		if len(b) >= skip+maxHeader {
			return 0, 0, ErrProtocol
		}
		return 0, 0, nil
	}
	line := b[skip : skip+end]
	if len(line) < 2 || line[len(line)-1] != '\r' {
		return 0, 0, ErrProtocol
	}
	line = line[:len(line)-1]
	neg := line[0] == '-'
	if neg {
		line = line[1:]
	}
	if len(line) == 0 || len(line) > 18 {
		return 0, 0, ErrProtocol
	}
	// As Redis's string2ll: no leading zero and no "-0".
	if line[0] == '0' && (len(line) > 1 || neg) {
		return 0, 0, ErrProtocol
	}
	for _, c := range line {
		if c < '0' || c > '9' {
			return 0, 0, ErrProtocol
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, skip + end + 1, nil
}

// parseInline splits one line as Redis's sdssplitargs does: on C's
// whitespace (a bare \r too); double quotes group words, with \" \\ \n \r
// \t \a \b and \xHH escapes as redis-cli writes them; single quotes group
// words literally but for \'.
func (r *Reader) parseInline(b []byte) ([][]byte, int, error) {
	nl := bytes.IndexByte(b[:min(len(b), maxInline)], '\n')
	if nl < 0 {
		if len(b) >= maxInline {
			return nil, 0, protoErrorf("too big inline request")
		}
		return nil, 0, nil
	}
	line := b[:nl]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	args := r.args[:0]
	for i := 0; i < len(line); {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i == len(line) {
			break
		}
		if len(args) >= r.lim.MaxArgs {
			return nil, 0, protoErrorf("invalid multibulk length")
		}
		if line[i] != '"' && line[i] != '\'' {
			start := i
			for i < len(line) && !isSpace(line[i]) {
				i++
			}
			args = append(args, line[start:i:i])
			continue
		}
		word, next, ok := unquote(line, i)
		if !ok {
			return nil, 0, protoErrorf("unbalanced quotes in request")
		}
		args = append(args, word)
		i = next
	}
	r.args = args
	return args, nl + 1, nil
}

// unquote reads the quoted word at line[i] (a double or a single quote)
// as Redis's sdssplitargs does, unescaping it in place (it only shrinks):
// in double quotes \n \r \t \a \b \xHH and \ before any other byte; in
// single quotes only \'. It returns the word and the index after the
// closing quote; ok is false when the quote is not closed or is followed
// by anything but a space.
func unquote(line []byte, i int) (word []byte, next int, ok bool) {
	q := line[i]
	i++
	start, out := i, i
	closed := false
	for i < len(line) {
		c := line[i]
		switch {
		case c == q:
			closed = true
		case q == '\'' && c == '\\' && i+1 < len(line) && line[i+1] == '\'':
			i++
			c = '\''
		case q == '"' && c == '\\' && i+1 < len(line):
			i++
			c = unescape(line, &i)
		}
		if closed {
			i++
			break
		}
		line[out] = c
		out++
		i++
	}
	if !closed || (i < len(line) && !isSpace(line[i])) {
		return nil, 0, false
	}
	return line[start:out:out], i, true
}

// unescape is the byte a double-quoted escape stands for, line[*i] being
// the byte after the backslash; *i ends on the escape's last byte.
func unescape(line []byte, i *int) byte {
	switch c := line[*i]; c {
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'a':
		return '\a'
	case 'b':
		return '\b'
	case 'x':
		if *i+2 < len(line) && isHex(line[*i+1]) && isHex(line[*i+2]) {
			*i += 2
			return unhex(line[*i-1])<<4 | unhex(line[*i])
		}
		return 'x'
	default:
		return c
	}
}

// isSpace is C's isspace, what Redis splits inline commands on.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func printable(c byte) string {
	if c >= ' ' && c <= '~' {
		return string(rune(c))
	}
	return fmt.Sprintf("\\x%02x", c)
}
