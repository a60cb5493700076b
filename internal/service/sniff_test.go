package service

import (
	"bytes"
	"io"
	"runtime"
	"testing"

	"golang.org/x/net/http2/hpack"

	"github.com/kvdb/kvdb/internal/wire"
)

// chunkReader delivers data in chunks of at most chunk bytes, then EOF.
type chunkReader struct {
	data      []byte
	chunk     int
	delivered int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.data[:min(len(c.data), c.chunk)])
	c.data = c.data[n:]
	c.delivered += n
	return n, nil
}

// grpcOpening is what a gRPC client sends first: the preface, SETTINGS and
// the HEADERS of its first call, split over a CONTINUATION when split is
// set.
func grpcOpening(contentType string, split bool) []byte {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/kvdb.v1.KVService/Get"},
		{":authority", "localhost"}, {"content-type", contentType}, {"te", "trailers"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	b := appendH2Frame([]byte(http2Preface), h2FrameSettings, 0, 0, make([]byte, 6))
	b = appendH2Frame(b, 0x8, 0, 0, []byte{0, 0, 1, 0}) // WINDOW_UPDATE
	if !split {
		return appendH2Frame(b, h2FrameHeaders, h2FlagEndHeaders, 1, hb.Bytes())
	}
	h := hb.Bytes()
	b = appendH2Frame(b, h2FrameHeaders, 0, 1, h[:5])
	return appendH2Frame(b, h2FrameContinuation, h2FlagEndHeaders, 1, h[5:])
}

func TestSniffProtocols(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want protocol
	}{
		{"binary hello", wire.AppendClientHello(nil, wire.Version), protoBinary},
		{"binary magic only", []byte("KVDB"), protoBinary},
		{"K", []byte("K"), protoNone},
		{"KVDX", []byte("KVDX"), protoNone},
		{"HTTP/1 GET", []byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), protoHTTP1},
		{"HTTP/1 PUT", []byte("PUT /x HTTP/1.1\r\n"), protoHTTP1},
		{"gRPC", grpcOpening("application/grpc", false), protoGRPC},
		{"gRPC+proto with CONTINUATION", grpcOpening("application/grpc+proto", true), protoGRPC},
		{"HTTP/2 not gRPC", grpcOpening("text/html", false), protoNone},
		{"HTTP/2 preface only", []byte(http2Preface), protoNone},
		{"HTTP/2 DATA flood", func() []byte {
			b := appendH2Frame([]byte(http2Preface), h2FrameSettings, 0, 0, nil)
			for len(b) < 3*sniffMaxBytes {
				b = appendH2Frame(b, h2FrameData, 0, 1, make([]byte, 1000))
			}
			return b
		}(), protoNone},
		{"HTTP/2 frame declaring 16 MiB", appendH2Frame([]byte(http2Preface), h2FrameData, 0, 1, nil)[: len(http2Preface)+9 : len(http2Preface)+9], protoNone},
		{"garbage", []byte("\x16\x03\x01 TLS hello"), protoNone},
	}
	cases[len(cases)-2].in[len(http2Preface)] = 0xff // length 0xff0000
	for _, tc := range cases {
		for _, chunk := range []int{1, 7, 1 << 20} {
			var w bytes.Buffer
			s := sniffer{w: &w}
			src := &chunkReader{data: tc.in, chunk: chunk}
			got, prefix, _ := s.sniff(src)
			if got != tc.want {
				t.Fatalf("%s (chunks of %d): %s, want %s", tc.name, chunk, got, tc.want)
			}
			if !bytes.Equal(prefix, tc.in[:src.delivered]) || src.delivered > sniffMaxBytes {
				t.Fatalf("%s: read %d bytes, returned %d", tc.name, src.delivered, len(prefix))
			}
			if tc.want == protoGRPC && !bytes.Equal(w.Bytes(), appendH2Frame(nil, h2FrameSettings, 0, 0, nil)) {
				t.Fatalf("%s: wrote %x, want the server's SETTINGS", tc.name, w.Bytes())
			}
		}
	}
}

// FuzzSniff feeds arbitrary bytes, in chunks of arbitrary size, to protocol
// detection: it never reads more than sniffMaxBytes, returns exactly what it
// read, writes at most one SETTINGS frame, and allocates in proportion to
// what it read whatever lengths the bytes declare.
func FuzzSniff(f *testing.F) {
	f.Add(uint16(3), wire.AppendClientHello(nil, wire.Version))
	f.Add(uint16(5), []byte("GET / HTTP/1.1\r\n"))
	f.Add(uint16(64), grpcOpening("application/grpc", true))
	f.Add(uint16(9), appendH2Frame([]byte(http2Preface), h2FrameData, 0, 1, make([]byte, 100)))
	f.Add(uint16(1), []byte(http2Preface+"\xff\xff\xff\x01\x04\x00\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, chunk uint16, data []byte) {
		var w bytes.Buffer
		s := sniffer{w: &w}
		src := &chunkReader{data: data, chunk: max(int(chunk), 1)}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc
		p, prefix, _ := s.sniff(src)
		runtime.ReadMemStats(&ms)
		if src.delivered > sniffMaxBytes || cap(prefix) > sniffMaxBytes {
			t.Fatalf("read %d bytes, buffer capacity %d", src.delivered, cap(prefix))
		}
		if !bytes.Equal(prefix, data[:src.delivered]) {
			t.Fatal("returned bytes differ from those read")
		}
		if alloc := ms.TotalAlloc - before; alloc > uint64(8*src.delivered+64<<10) {
			t.Fatalf("allocated %d bytes detecting %d", alloc, src.delivered)
		}
		if w.Len() > 0 && !bytes.Equal(w.Bytes(), appendH2Frame(nil, h2FrameSettings, 0, 0, nil)) {
			t.Fatalf("wrote %x", w.Bytes())
		}
		if p == protoPending || p == protoHTTP2 {
			t.Fatalf("returned %s", p)
		}
	})
}
