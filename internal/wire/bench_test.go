package wire

import "testing"

// Codec benchmarks: go test -run='^$' -bench=. -benchmem ./internal/wire/
func BenchmarkDecodeGet(b *testing.B) {
	fr := AppendGet(nil, 1, 0, []byte("key-000001"))
	var req Request
	b.ReportAllocs()
	for b.Loop() {
		f, _ := ParseFrame(fr, len(fr))
		if err := DecodeRequest(f, &req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodePut256(b *testing.B) {
	fr := AppendPut(nil, 1, 0, []byte("key-000001"), make([]byte, 256))
	var req Request
	b.ReportAllocs()
	for b.Loop() {
		f, _ := ParseFrame(fr, len(fr))
		if err := DecodeRequest(f, &req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendGetResponse256(b *testing.B) {
	resp := &Response{Op: OpGet, ID: 1, Revision: 9, KV: KeyValue{Key: []byte("key-000001"), Value: make([]byte, 256), CreateRevision: 1, ModRevision: 2, Version: 3}}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendResponse(buf[:0], resp)
	}
}

func BenchmarkDecodeGetResponse256(b *testing.B) {
	fr := AppendResponse(nil, &Response{Op: OpGet, ID: 1, Revision: 9, KV: KeyValue{Key: []byte("key-000001"), Value: make([]byte, 256)}})
	var resp Response
	b.ReportAllocs()
	for b.Loop() {
		f, _ := ParseFrame(fr, len(fr))
		if err := DecodeResponse(f, &resp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReaderNext reads pipelined GET frames from a stream, as a
// server's read loop does: no allocation per frame.
func BenchmarkReaderNext(b *testing.B) {
	var stream []byte
	for i := range 256 {
		stream = AppendGet(stream, uint64(i), 0, []byte("key-000001"))
	}
	src := &loopReader{data: stream}
	rd := NewReader(src, 32<<10, DefaultMaxFrameSize)
	b.ReportAllocs()
	b.SetBytes(int64(len(stream) / 256))
	for b.Loop() {
		if _, err := rd.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

// loopReader returns data over and over, in reads of at most 4 KiB.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p[:min(len(p), 4096)], l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}
