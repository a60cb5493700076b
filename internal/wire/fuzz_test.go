package wire

import (
	"bytes"
	"testing"
)

const fuzzMaxFrame = 1 << 16

func fuzzSeeds(f *testing.F) {
	f.Add(AppendGet(nil, 1, 0, []byte("k")))
	f.Add(AppendPut(nil, 2, FlagPrevKV, []byte("k"), []byte("v")))
	f.Add(AppendRequest(nil, &Request{Op: OpBatch, Ops: []BatchOp{{Type: BatchPut, Key: []byte("a"), Value: []byte("1")}, {Type: BatchDelete, Key: []byte("b")}}}))
	f.Add(AppendRequest(nil, &Request{Op: OpTxn, Compares: []Compare{{Key: []byte("a"), Target: TargetValue, Value: []byte("x")}}, Ops: []BatchOp{{Type: BatchDelete, Key: []byte("a")}}}))
	f.Add(AppendRequest(nil, &Request{Op: OpRange, Key: []byte("a"), End: []byte{0}, Limit: 10}))
	f.Add(AppendResponse(nil, &Response{Op: OpRange, Count: 1, KVs: []KeyValue{{Key: []byte("a"), Value: []byte("b")}}}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
}

// FuzzDecodeRequest feeds arbitrary bytes to the stream reader and the
// request decoder: no panic, nothing allocated past the frame limit, and a
// request that decodes re-encodes to the same frame.
func FuzzDecodeRequest(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		rd := NewReader(bytes.NewReader(data), 64, fuzzMaxFrame)
		var req Request
		for {
			fr, err := rd.Next()
			if err != nil {
				return
			}
			if len(rd.buf) > fuzzMaxFrame*2 {
				t.Fatalf("reader buffer grew to %d", len(rd.buf))
			}
			if DecodeRequest(fr, &req) != nil {
				continue
			}
			if cap(req.Ops)*minBatchOpSize > len(fr.Body)+minBatchOpSize*8 {
				t.Fatalf("ops capacity %d for a %d-byte body", cap(req.Ops), len(fr.Body))
			}
			again := AppendRequest(nil, &req)
			f2, err := ParseFrame(again, len(again))
			if err != nil {
				t.Fatalf("re-encoded frame does not parse: %v", err)
			}
			var req2 Request
			if err := DecodeRequest(f2, &req2); err != nil {
				t.Fatalf("re-encoded request does not decode: %v", err)
			}
			if !bytes.Equal(AppendRequest(nil, &req2), again) {
				t.Fatal("encoding is not stable")
			}
		}
	})
}

// FuzzDecodeResponse does the same for the client's response decoder.
func FuzzDecodeResponse(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		rd := NewReader(bytes.NewReader(data), 64, fuzzMaxFrame)
		var resp Response
		for {
			fr, err := rd.Next()
			if err != nil {
				return
			}
			if DecodeResponse(fr, &resp) != nil {
				continue
			}
			if cap(resp.KVs)*kvFixedSize > len(fr.Body)+kvFixedSize*8 {
				t.Fatalf("kvs capacity %d for a %d-byte body", cap(resp.KVs), len(fr.Body))
			}
		}
	})
}

// FuzzHello checks both hello parsers never panic.
func FuzzHello(f *testing.F) {
	f.Add(AppendClientHello(nil, Version))
	f.Add(AppendServerHello(nil, ServerHello{Version: 1}))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseClientHello(data)
		_, _ = ParseServerHello(data)
	})
}
