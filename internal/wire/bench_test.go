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
