package service

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/net/http2/hpack"

	"github.com/kvdb/kvdb/internal/wire"
)

// Protocol detection. One port serves the binary protocol, gRPC (HTTP/2) and
// HTTP/1; the first bytes of a connection say which. The sniffer reads at
// most sniffMaxBytes into a buffer that grows with what arrived, never by a
// length the peer declared, and gives up when they are not enough.

// sniffMaxBytes bounds what detection reads from one connection: the
// binary magic or an HTTP/1 request line need a few bytes, gRPC the HTTP/2
// preface and frames up to the first request's HEADERS (a few hundred bytes;
// header blocks larger than this are refused).
const sniffMaxBytes = 8 << 10

// sniffInitialBytes is the buffer a connection starts detection with.
const sniffInitialBytes = 512

type protocol uint8

const (
	protoPending protocol = iota // more bytes needed
	protoNone                    // no protocol this port serves
	protoBinary
	protoGRPC
	protoHTTP1
	protoHTTP2 // the HTTP/2 preface: frames follow (internal to the sniffer)
	protoRESP  // the Redis protocol: a RESP array ("*"), what every Redis client sends
)

func (p protocol) String() string {
	return [...]string{"pending", "none", "binary", "grpc", "http1", "http2", "resp"}[p]
}

const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// openings are the prefixes that decide a protocol.
var openings = []struct {
	prefix string
	proto  protocol
}{
	{wire.Magic, protoBinary},
	{"*", protoRESP},
	{http2Preface, protoHTTP2},
	{"GET ", protoHTTP1}, {"HEAD ", protoHTTP1}, {"POST ", protoHTTP1}, {"PUT ", protoHTTP1},
	{"DELETE ", protoHTTP1}, {"OPTIONS ", protoHTTP1}, {"PATCH ", protoHTTP1},
	{"CONNECT ", protoHTTP1}, {"TRACE ", protoHTTP1},
}

// classifyOpening looks at a connection's first bytes only.
func classifyOpening(b []byte) protocol {
	pending := false
	for _, o := range openings {
		if len(b) >= len(o.prefix) {
			if string(b[:len(o.prefix)]) == o.prefix {
				return o.proto
			}
		} else if o.prefix[:len(b)] == string(b) {
			pending = true
		}
	}
	if pending {
		return protoPending
	}
	return protoNone
}

// HTTP/2 frame types and flags the sniffer looks at (RFC 9113 §6).
const (
	h2FrameData         = 0x0
	h2FrameHeaders      = 0x1
	h2FrameSettings     = 0x4
	h2FrameGoAway       = 0x7
	h2FrameContinuation = 0x9

	h2FlagAck        = 0x1
	h2FlagEndStream  = 0x1
	h2FlagEndHeaders = 0x4
	h2FlagPadded     = 0x8
	h2FlagPriority   = 0x20

	h2ErrEnhanceYourCalm = 0xb
	h2FrameHeaderSize    = 9
)

// sniffer detects the protocol of one connection.
type sniffer struct {
	buf []byte
	// w receives the server's SETTINGS frame once the client's arrives:
	// some gRPC clients wait for it before they send a request.
	w io.Writer

	// HTTP/2 state: off is the next frame's offset in buf.
	off          int
	settingsSent bool
	hdec         *hpack.Decoder
	inHeaders    bool // a HEADERS frame without END_HEADERS was seen
	grpc         bool // content-type application/grpc seen
	streamID     uint32
}

// errSniffLimit: sniffMaxBytes arrived without deciding the protocol.
var errSniffLimit = errors.New("protocol not recognised in the first bytes")

// errNoProgress: a reader kept returning nothing.
var errNoProgress = errors.New("no progress reading the connection")

// sniff reads from r until the protocol is known. It returns the protocol
// and every byte read, to be replayed to the protocol's server. A read error
// (the detection deadline, EOF) or a stream no protocol matches returns
// protoNone.
func (s *sniffer) sniff(r io.Reader) (protocol, []byte, error) {
	if s.buf == nil {
		s.buf = make([]byte, 0, sniffInitialBytes)
	}
	var rerr error
	for empty := 0; empty < 100; {
		p := s.classify()
		if p != protoPending {
			if p == protoNone && rerr == nil {
				rerr = errors.New("protocol not recognised")
			}
			return p, s.buf, rerr
		}
		if rerr != nil {
			return protoNone, s.buf, rerr
		}
		if len(s.buf) == sniffMaxBytes {
			return protoNone, s.buf, errSniffLimit
		}
		if len(s.buf) == cap(s.buf) {
			nb := make([]byte, len(s.buf), min(2*cap(s.buf), sniffMaxBytes))
			copy(nb, s.buf)
			s.buf = nb
		}
		n, err := r.Read(s.buf[len(s.buf):cap(s.buf)])
		s.buf = s.buf[:len(s.buf)+n]
		rerr = err
		if n == 0 && err == nil {
			empty++
		} else {
			empty = 0
		}
	}
	return protoNone, s.buf, errNoProgress
}

func (s *sniffer) classify() protocol {
	p := classifyOpening(s.buf)
	if p != protoHTTP2 {
		return p
	}
	if s.off == 0 {
		s.off = len(http2Preface)
	}
	return s.scanHTTP2()
}

// scanHTTP2 walks the complete frames after the preface up to the end of
// the first request's header block: gRPC if its content-type says so.
func (s *sniffer) scanHTTP2() protocol {
	for s.off+h2FrameHeaderSize <= len(s.buf) {
		h := s.buf[s.off:]
		length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		typ, flags := h[3], h[4]
		stream := binary.BigEndian.Uint32(h[5:9]) & (1<<31 - 1)
		end := s.off + h2FrameHeaderSize + length
		if end > sniffMaxBytes {
			return protoNone // a frame that cannot fit: not a gRPC opening
		}
		if end > len(s.buf) {
			return protoPending
		}
		payload := s.buf[s.off+h2FrameHeaderSize : end]
		s.off = end
		if s.inHeaders && typ != h2FrameContinuation {
			return protoNone // RFC 9113 §6.10: nothing may interleave
		}
		switch typ {
		case h2FrameSettings:
			if flags&h2FlagAck == 0 && !s.settingsSent && s.w != nil {
				s.settingsSent = true
				if _, err := s.w.Write(appendH2Frame(nil, h2FrameSettings, 0, 0, nil)); err != nil {
					return protoNone
				}
			}
		case h2FrameHeaders:
			if stream == 0 {
				return protoNone
			}
			s.streamID = stream
			if flags&h2FlagPadded != 0 {
				if len(payload) < 1 || int(payload[0]) >= len(payload) {
					return protoNone
				}
				payload = payload[1 : len(payload)-int(payload[0])]
			}
			if flags&h2FlagPriority != 0 {
				if len(payload) < 5 {
					return protoNone
				}
				payload = payload[5:]
			}
			if p := s.headerBlock(payload, flags); p != protoPending {
				return p
			}
		case h2FrameContinuation:
			if !s.inHeaders || stream != s.streamID {
				return protoNone
			}
			if p := s.headerBlock(payload, flags); p != protoPending {
				return p
			}
		}
	}
	return protoPending
}

// headerBlock decodes one fragment of the first request's header block.
func (s *sniffer) headerBlock(frag []byte, flags byte) protocol {
	if s.hdec == nil {
		s.hdec = hpack.NewDecoder(4096, func(f hpack.HeaderField) {
			if f.Name == "content-type" && strings.HasPrefix(f.Value, "application/grpc") {
				s.grpc = true
			}
		})
		s.hdec.SetMaxStringLength(sniffMaxBytes)
	}
	if _, err := s.hdec.Write(frag); err != nil {
		return protoNone
	}
	s.inHeaders = flags&h2FlagEndHeaders == 0
	if s.inHeaders {
		return protoPending
	}
	if s.grpc {
		return protoGRPC
	}
	return protoNone
}

// appendH2Frame appends one HTTP/2 frame.
func appendH2Frame(dst []byte, typ, flags byte, stream uint32, payload []byte) []byte {
	n := len(payload)
	dst = append(dst, byte(n>>16), byte(n>>8), byte(n), typ, flags)
	dst = binary.BigEndian.AppendUint32(dst, stream)
	return append(dst, payload...)
}

// refusal is what a connection over -max-connections is told in its own
// protocol before it is closed. The protocol's opening is read first (with
// a short deadline) so the error is one its client understands.
func refusal(p protocol, stream uint32, hello wire.ServerHello, msg string) []byte {
	switch p {
	case protoBinary:
		// A hello the client accepts, then the ERROR frame it reports.
		b := wire.AppendServerHello(nil, hello)
		return wire.AppendError(b, wire.OpError, 0, wire.StatusResourceExhausted, msg)
	case protoGRPC:
		// A trailers-only response with RESOURCE_EXHAUSTED to the first
		// request, then GOAWAY. SETTINGS went out during detection.
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		for _, f := range [][2]string{{":status", "200"}, {"content-type", "application/grpc"},
			{"grpc-status", "8"}, {"grpc-message", grpcPercentEncode(msg)}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		b := appendH2Frame(nil, h2FrameHeaders, h2FlagEndHeaders|h2FlagEndStream, stream, hb.Bytes())
		ga := binary.BigEndian.AppendUint32(nil, stream)
		ga = binary.BigEndian.AppendUint32(ga, h2ErrEnhanceYourCalm)
		return appendH2Frame(b, h2FrameGoAway, 0, 0, append(ga, msg...))
	case protoRESP:
		return []byte("-ERR max number of clients reached: " + msg + "\r\n")
	case protoHTTP1:
		body := msg + "\n"
		return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"+
			"Connection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
	return nil
}

// grpcPercentEncode encodes a grpc-message value (gRPC over HTTP/2 spec).
func grpcPercentEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= ' ' && c <= '~' && c != '%' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
