package raftnode

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
)

func testMessages(n, dataSize int) []*raftpb.Message {
	var msgs []*raftpb.Message
	for i := range n {
		var ents []*raftpb.Entry
		for j := range i + 1 {
			ents = append(ents, &raftpb.Entry{Term: proto.Uint64(3), Index: proto.Uint64(uint64(100*i + j)),
				Data: bytes.Repeat([]byte{byte(i + j)}, dataSize)})
		}
		msgs = append(msgs, &raftpb.Message{Type: raftpb.MessageType_MsgApp.Enum(), To: proto.Uint64(2), From: proto.Uint64(1),
			Term: proto.Uint64(3), LogTerm: proto.Uint64(3), Index: proto.Uint64(uint64(100 * i)), Entries: ents, Commit: proto.Uint64(7)})
	}
	return msgs
}

func encodeBatch(t testing.TB, b *outBatch) []byte {
	t.Helper()
	bs, err := StreamCodec.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Free()
	return bs.Materialize()
}

// The batch encoding is a StreamRequest, read back by the generated code,
// and the generated code's encoding decodes into the same batch: members
// that encode or decode with the plain protobuf codec interoperate.
func TestStreamCodecMatchesStreamRequest(t *testing.T) {
	for _, tc := range []struct {
		name     string
		n, size  int
		cluster  uint64
		from     uint64
		clientAt string
	}{
		{"empty", 0, 0, 0, 0, ""},
		{"heartbeat only", 1, 0, 0xabc, 1, ""},
		{"first request", 3, 100, 0xabc, 1, "127.0.0.1:7000"},
		// Above gRPC's pooling threshold: the pooled buffer path.
		{"large", 4, 64 << 10, 1 << 63, 1<<64 - 1, "n1.example:7000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := testMessages(tc.n, tc.size)
			b := &outBatch{clusterID: tc.cluster, from: tc.from, clientAddress: tc.clientAt}
			for _, m := range msgs {
				b.add(m)
			}
			wire := encodeBatch(t, b)

			var req raftv1.StreamRequest
			if err := proto.Unmarshal(wire, &req); err != nil {
				t.Fatalf("generated decode: %v", err)
			}
			if req.GetClusterId() != tc.cluster || req.GetFrom() != tc.from || req.GetClientAddress() != tc.clientAt || len(req.GetMessages()) != tc.n {
				t.Fatalf("generated decode: %v", &req)
			}
			for i, raw := range req.GetMessages() {
				var m raftpb.Message
				if err := proto.Unmarshal(raw, &m); err != nil || !proto.Equal(&m, msgs[i]) {
					t.Fatalf("message %d: %v %v", i, err, &m)
				}
			}

			// The generated encoding, decoded by the codec.
			plain, err := proto.Marshal(&req)
			if err != nil {
				t.Fatal(err)
			}
			var in inBatch
			if err := StreamCodec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(plain)}, &in); err != nil {
				t.Fatal(err)
			}
			if in.clusterID != tc.cluster || in.from != tc.from || in.clientAddress != tc.clientAt || len(in.msgs) != tc.n {
				t.Fatalf("codec decode: %+v", in)
			}
			for i, m := range in.msgs {
				if !proto.Equal(m, msgs[i]) {
					t.Fatalf("message %d differs: %v", i, m)
				}
			}
		})
	}
}

// Decoding reuses the batch: nothing of the previous request survives.
func TestStreamCodecDecodeResets(t *testing.T) {
	var in inBatch
	first := encodeBatch(t, func() *outBatch {
		b := &outBatch{clusterID: 9, from: 2, clientAddress: "a:1"}
		for _, m := range testMessages(3, 10) {
			b.add(m)
		}
		return b
	}())
	if err := in.decode(first); err != nil || len(in.msgs) != 3 {
		t.Fatal(err, len(in.msgs))
	}
	b := &outBatch{clusterID: 9, from: 2}
	b.add(testMessages(1, 0)[0])
	if err := in.decode(encodeBatch(t, b)); err != nil {
		t.Fatal(err)
	}
	if len(in.msgs) != 1 || in.clientAddress != "" {
		t.Fatalf("stale state after decode: %+v", in)
	}
}

// Other messages go to the protobuf codec.
func TestStreamCodecDelegates(t *testing.T) {
	bs, err := StreamCodec.Marshal(&raftv1.StreamResponse{Error: "no"})
	if err != nil {
		t.Fatal(err)
	}
	var resp raftv1.StreamResponse
	if err := StreamCodec.Unmarshal(bs, &resp); err != nil || resp.GetError() != "no" {
		t.Fatal(err, &resp)
	}
	if StreamCodec.Name() != "proto" {
		t.Fatalf("name %q: members using the plain codec would refuse the content-subtype", StreamCodec.Name())
	}
}

// A message that changes between add and the encoding is refused, not sent
// with a wrong length prefix.
func TestStreamCodecRefusesChangedMessage(t *testing.T) {
	m := testMessages(1, 10)[0]
	b := &outBatch{from: 1}
	b.add(m)
	m.Entries = append(m.Entries, &raftpb.Entry{Data: []byte("late")})
	if _, err := StreamCodec.Marshal(b); err == nil || !strings.Contains(err.Error(), "measured") {
		t.Fatalf("err = %v", err)
	}
}

func TestStreamCodecMalformed(t *testing.T) {
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"truncated tag", []byte{0x80}},
		{"truncated varint", cat(tag(1, protowire.VarintType), []byte{0xff})},
		{"message longer than input", cat(tag(3, protowire.BytesType), protowire.AppendVarint(nil, 1000), []byte{1, 2})},
		{"message not a raft message", cat(tag(3, protowire.BytesType), []byte{2, 0xff, 0xff})},
		{"client address not UTF-8", cat(tag(4, protowire.BytesType), []byte{1, 0xff})},
		{"unknown field truncated", cat(tag(9, protowire.BytesType), []byte{5, 1})},
		{"group end without start", tag(9, protowire.EndGroupType)},
		{"more messages than a sender puts in one request", bytes.Repeat(cat(tag(3, protowire.BytesType), []byte{0}), maxBatchMessages+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in inBatch
			err := in.decode(tc.in)
			if err == nil {
				t.Fatalf("decoded %+v", in)
			}
			var plain raftv1.StreamRequest
			if perr := proto.Unmarshal(tc.in, &plain); perr == nil && !errors.Is(err, errBadStreamRequest) && !strings.Contains(err.Error(), "raft message") {
				t.Fatalf("plain decode accepts it and the error says nothing useful: %v", err)
			}
		})
	}
	// As many empty messages as a sender puts in one request decode.
	var full inBatch
	if err := full.decode(bytes.Repeat(cat(tag(3, protowire.BytesType), []byte{0}), maxBatchMessages)); err != nil || len(full.msgs) != maxBatchMessages {
		t.Fatalf("%d messages: %v (%d decoded)", maxBatchMessages, err, len(full.msgs))
	}
	// Unknown fields are skipped, as the generated code does.
	var in inBatch
	if err := in.decode(cat(tag(9, protowire.VarintType), []byte{5}, tag(2, protowire.VarintType), []byte{7})); err != nil || in.from != 7 {
		t.Fatal(err, in.from)
	}
}

// FuzzStreamRequestDecode: the codec never panics and never accepts what
// the generated code refuses; what it accepts it reads as the generated
// code does.
func FuzzStreamRequestDecode(f *testing.F) {
	b := &outBatch{clusterID: 5, from: 1, clientAddress: "127.0.0.1:1"}
	for _, m := range testMessages(2, 8) {
		b.add(m)
	}
	f.Add(encodeBatch(f, b))
	f.Add([]byte{})
	f.Add([]byte{0x1a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		var in inBatch
		if err := in.decode(data); err != nil {
			return
		}
		var req raftv1.StreamRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			t.Fatalf("codec accepted what the generated code refuses: %v", err)
		}
		if req.GetClusterId() != in.clusterID || req.GetFrom() != in.from || req.GetClientAddress() != in.clientAddress || len(req.GetMessages()) != len(in.msgs) {
			t.Fatalf("codec %+v, generated %v", in, &req)
		}
		for i, raw := range req.GetMessages() {
			var m raftpb.Message
			if err := proto.Unmarshal(raw, &m); err != nil || !proto.Equal(&m, in.msgs[i]) {
				t.Fatalf("message %d: %v", i, err)
			}
		}
	})
}
