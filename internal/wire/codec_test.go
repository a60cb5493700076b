package wire

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"testing"
)

var requestOps = []Opcode{OpPing, OpGet, OpPut, OpDelete, OpRange, OpBatch, OpBegin, OpCommit, OpRollback, OpTxn, OpStats}

func randBytes(r *rand.Rand, max int) []byte {
	b := make([]byte, r.IntN(max+1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func randOps(r *rand.Rand) []BatchOp {
	ops := make([]BatchOp, r.IntN(5))
	for i := range ops {
		ops[i] = BatchOp{Type: BatchDelete, Key: randBytes(r, 8)}
		if r.IntN(2) == 0 {
			ops[i] = BatchOp{Type: BatchPut, Key: randBytes(r, 8), Value: randBytes(r, 16)}
		}
	}
	return ops
}

// randRequest builds a random valid request for op, with only the fields
// op carries set.
func randRequest(r *rand.Rand, op Opcode) *Request {
	req := &Request{Op: op, Flags: uint8(r.Uint32()), ID: r.Uint64()}
	switch op {
	case OpPing:
		req.Payload = randBytes(r, 32)
	case OpGet:
		req.Key = randBytes(r, 16)
	case OpPut:
		req.Key, req.Value = randBytes(r, 16), randBytes(r, 300)
	case OpDelete:
		req.Key, req.End = randBytes(r, 16), randBytes(r, 16)
	case OpRange:
		req.Key, req.End, req.Limit = randBytes(r, 16), randBytes(r, 16), r.Int64()
	case OpBatch:
		req.Ops = randOps(r)
	case OpTxn:
		req.Compares = make([]Compare, r.IntN(4))
		for i := range req.Compares {
			c := Compare{Key: randBytes(r, 8), Target: CompareTarget(1 + r.IntN(4)), Result: CompareResult(r.IntN(4))}
			if c.Target == TargetValue {
				c.Value = randBytes(r, 8)
			} else {
				c.Operand = r.Int64()
			}
			req.Compares[i] = c
		}
		req.Ops, req.Failure = randOps(r), randOps(r)
	}
	return req
}

func randKV(r *rand.Rand) KeyValue {
	return KeyValue{Key: randBytes(r, 16), Value: randBytes(r, 64), CreateRevision: r.Int64(), ModRevision: r.Int64(), Version: r.Int64()}
}

func randResponse(r *rand.Rand, op Opcode) *Response {
	resp := &Response{Op: op, ID: r.Uint64()}
	if r.IntN(5) == 0 {
		resp.Status = Status(1 + r.IntN(16))
		resp.Payload = randBytes(r, 40)
		return resp
	}
	switch op {
	case OpPing, OpStats:
		resp.Payload = randBytes(r, 64)
	case OpGet:
		resp.Revision, resp.KV = r.Int64(), randKV(r)
	case OpPut:
		resp.Revision = r.Int64()
		if r.IntN(2) == 0 {
			resp.Flags = FlagHasPrevKV
			resp.KV = randKV(r)
		}
	case OpDelete:
		resp.Revision, resp.Deleted = r.Int64(), r.Int64()
		for range r.IntN(4) {
			resp.KVs = append(resp.KVs, randKV(r))
		}
	case OpRange:
		resp.Revision, resp.Count, resp.More = r.Int64(), r.Int64(), r.IntN(2) == 0
		for range r.IntN(4) {
			resp.KVs = append(resp.KVs, randKV(r))
		}
	case OpBatch:
		resp.Revision, resp.Puts, resp.Deleted = r.Int64(), r.Int64(), r.Int64()
	case OpBegin:
		resp.TxnID = r.Uint64()
	case OpCommit:
		resp.Revision = r.Int64()
	case OpTxn:
		resp.Revision, resp.Succeeded = r.Int64(), r.IntN(2) == 0
	}
	return resp
}

// normalize maps empty slices to nil so decoded values (which alias the
// frame and are never nil) compare equal to generated ones.
func normalize(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		normalize(v.Elem())
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			normalize(v.Field(i))
		}
	case reflect.Slice:
		if v.Len() == 0 {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		if v.Type().Elem().Kind() == reflect.Struct {
			for i := 0; i < v.Len(); i++ {
				normalize(v.Index(i))
			}
		}
	}
}

func TestRequestRoundTripEveryOpcode(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, op := range requestOps {
		t.Run(op.String(), func(t *testing.T) {
			var got Request
			for i := 0; i < 500; i++ {
				want := randRequest(r, op)
				frame := AppendRequest(nil, want)
				f, err := ParseFrame(frame, len(frame))
				if err != nil {
					t.Fatalf("ParseFrame: %v", err)
				}
				if err := DecodeRequest(f, &got); err != nil {
					t.Fatalf("DecodeRequest(%x): %v", frame, err)
				}
				g := got
				normalize(reflect.ValueOf(&g))
				normalize(reflect.ValueOf(want))
				if !reflect.DeepEqual(&g, want) {
					t.Fatalf("round trip:\n got %+v\nwant %+v", g, *want)
				}
				// Re-encoding the decoded value gives the same bytes.
				if again := AppendRequest(nil, &got); !bytes.Equal(again, frame) {
					t.Fatalf("re-encode differs:\n%x\n%x", again, frame)
				}
			}
		})
	}
}

func TestResponseRoundTripEveryOpcode(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, op := range append([]Opcode{OpError}, requestOps...) {
		t.Run(op.String(), func(t *testing.T) {
			var got Response
			for i := 0; i < 500; i++ {
				want := randResponse(r, op)
				frame := AppendResponse(nil, want)
				f, err := ParseFrame(frame, len(frame))
				if err != nil {
					t.Fatalf("ParseFrame: %v", err)
				}
				if err := DecodeResponse(f, &got); err != nil {
					t.Fatalf("DecodeResponse(%x): %v", frame, err)
				}
				g := got
				normalize(reflect.ValueOf(&g))
				normalize(reflect.ValueOf(want))
				if !reflect.DeepEqual(&g, want) {
					t.Fatalf("round trip:\n got %+v\nwant %+v", g, *want)
				}
			}
		})
	}
}

func TestFastEncodersMatchGeneric(t *testing.T) {
	key, val := []byte("k1"), []byte("value")
	if a, b := AppendGet(nil, 7, FlagSerializable, key), AppendRequest(nil, &Request{Op: OpGet, Flags: FlagSerializable, ID: 7, Key: key}); !bytes.Equal(a, b) {
		t.Fatalf("AppendGet %x != %x", a, b)
	}
	if a, b := AppendPut(nil, 8, 0, key, val), AppendRequest(nil, &Request{Op: OpPut, ID: 8, Key: key, Value: val}); !bytes.Equal(a, b) {
		t.Fatalf("AppendPut %x != %x", a, b)
	}
	if a, b := AppendError(nil, OpGet, 9, StatusNotFound, "no"), AppendResponse(nil, &Response{Op: OpGet, ID: 9, Status: StatusNotFound, Payload: []byte("no")}); !bytes.Equal(a, b) {
		t.Fatalf("AppendError %x != %x", a, b)
	}
}

func TestReaderStreamsFramesAcrossReads(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var stream []byte
	var want []*Request
	for i := 0; i < 200; i++ {
		req := randRequest(r, requestOps[r.IntN(len(requestOps))])
		want = append(want, req)
		stream = AppendRequest(stream, req)
	}
	// One byte per Read exercises every partial-header and partial-body path,
	// and a 16-byte initial buffer every growth path.
	rd := NewReader(&oneByteReader{b: stream}, 16, 1<<20)
	var got Request
	for i, w := range want {
		f, err := rd.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if err := DecodeRequest(f, &got); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(AppendRequest(nil, &got), AppendRequest(nil, w)) {
			t.Fatalf("frame %d differs", i)
		}
	}
	if _, err := rd.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after last frame: %v, want EOF", err)
	}
}

type oneByteReader struct{ b []byte }

func (o *oneByteReader) Read(p []byte) (int, error) {
	if len(o.b) == 0 {
		return 0, io.EOF
	}
	p[0] = o.b[0]
	o.b = o.b[1:]
	return 1, nil
}

func TestMalformedInput(t *testing.T) {
	good := AppendGet(nil, 1, 0, []byte("k"))
	cases := []struct {
		name  string
		input []byte
		want  error
	}{
		{"truncated header", good[:10], io.ErrUnexpectedEOF},
		{"truncated body", good[:len(good)-1], io.ErrUnexpectedEOF},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xf0, 2, 0, 0, 0}, ErrFrameTooLarge},
		{"length below header", []byte{0, 0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrFrameTooShort},
		{"reserved byte set", func() []byte { b := bytes.Clone(good); b[7] = 1; return b }(), ErrReservedBits},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(c.input), 64, 1024).Next()
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
	body := []struct {
		name string
		f    Frame
		want error
	}{
		{"unknown opcode", Frame{Op: 0x7f}, ErrUnknownOpcode},
		{"put key length past body", Frame{Op: OpPut, Body: []byte{0, 0, 1, 0, 'k'}}, ErrTruncated},
		{"batch count past body", Frame{Op: OpBatch, Body: []byte{0xff, 0xff, 0xff, 0xff, 1}}, ErrTruncated},
		{"batch op type", Frame{Op: OpBatch, Body: []byte{0, 0, 0, 1, 9, 0, 0, 0, 0}}, ErrBadBatchOpType},
		{"range trailing bytes", Frame{Op: OpRange, Body: append(make([]byte, 16), 1)}, ErrTrailingBytes},
		{"status in request", Frame{Op: OpGet, Status: StatusNotFound}, ErrRequestStatus},
	}
	for _, c := range body {
		t.Run(c.name, func(t *testing.T) {
			var req Request
			if err := DecodeRequest(c.f, &req); !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

func TestHello(t *testing.T) {
	v, err := ParseClientHello(AppendClientHello(nil, Version))
	if err != nil || v != Version {
		t.Fatalf("client hello: %d, %v", v, err)
	}
	if _, err := ParseClientHello(AppendClientHello(nil, 9)); !errors.Is(err, ErrBadVersion) {
		t.Fatalf("bad version: %v", err)
	}
	if _, err := ParseClientHello([]byte("KVDX\x01\x00\x00\x00")); !errors.Is(err, ErrBadMagic) {
		t.Fatalf("bad magic: %v", err)
	}
	want := ServerHello{Version: Version, MaxFrameSize: 1 << 20, MaxInFlight: 64}
	got, err := ParseServerHello(AppendServerHello(nil, want))
	if err != nil || got != want {
		t.Fatalf("server hello: %+v, %v", got, err)
	}
}

func TestDecodeIsAllocationFree(t *testing.T) {
	frame := AppendPut(nil, 1, 0, []byte("key"), make([]byte, 256))
	batch := AppendRequest(nil, &Request{Op: OpBatch, Ops: []BatchOp{{Type: BatchPut, Key: []byte("a")}, {Type: BatchDelete, Key: []byte("b")}}})
	var req Request
	for _, fr := range [][]byte{frame, batch} {
		f, _ := ParseFrame(fr, len(fr))
		_ = DecodeRequest(f, &req) // warm the reused slices
		if n := testing.AllocsPerRun(100, func() { _ = DecodeRequest(f, &req) }); n != 0 {
			t.Fatalf("DecodeRequest(%s) allocates %v times", f.Op, n)
		}
	}
}
