package raftnode

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the codec StreamCodec falls back to
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// StreamCodec is the gRPC codec of a node's servers and of its raft
// streams. Every message but the raft stream's own is handed to gRPC's
// protobuf codec. The raft stream's requests (kvdb.raft.v1.StreamRequest on
// the wire, unchanged: the codec's name is "proto" and members that decode
// with the plain codec read the same bytes) are encoded straight from the
// raft messages into one pooled buffer, and decoded straight into raft
// messages from the received bytes. The generated types would hold each
// message as a byte slice of its own, so a MsgApp's entries were copied
// twice more on each side; on a 3-node cluster under BATCH load those
// copies were a quarter of every member's CPU.
//
// Servers install it with grpc.ForceServerCodecV2; the transport's client
// side sends an *outBatch on the stream, the server side receives an
// *inBatch (GRPCTransport.Stream).
var StreamCodec encoding.CodecV2 = streamCodec{next: encoding.GetCodecV2("proto")}

type streamCodec struct{ next encoding.CodecV2 }

func (streamCodec) Name() string { return "proto" }

func (c streamCodec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(*outBatch); ok {
		return b.marshal()
	}
	return c.next.Marshal(v)
}

func (c streamCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if in, ok := v.(*inBatch); ok {
		buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
		defer buf.Free()
		return in.decode(buf.ReadOnlyData())
	}
	return c.next.Unmarshal(data, v)
}

// StreamRequest's field numbers (api/proto/kvdb/raft/v1/raft_service.proto).
const (
	fieldClusterID     protowire.Number = 1
	fieldFrom          protowire.Number = 2
	fieldMessages      protowire.Number = 3
	fieldClientAddress protowire.Number = 4
)

// outBatch is one StreamRequest to send: the raft messages themselves, not
// their encodings.
type outBatch struct {
	clusterID, from uint64
	clientAddress   string
	msgs            []*raftpb.Message
	sizes           []int // proto.Size of each message
	bytes           int   // sum of sizes
}

// add appends m to the batch.
func (b *outBatch) add(m *raftpb.Message) {
	n := proto.Size(m)
	b.msgs = append(b.msgs, m)
	b.sizes = append(b.sizes, n)
	b.bytes += n
}

// reset empties the batch for reuse, dropping its references.
func (b *outBatch) reset() {
	clear(b.msgs)
	b.msgs, b.sizes, b.bytes = b.msgs[:0], b.sizes[:0], 0
}

func (b *outBatch) marshal() (mem.BufferSlice, error) {
	size := 0
	if b.clusterID != 0 {
		size += protowire.SizeTag(fieldClusterID) + protowire.SizeVarint(b.clusterID)
	}
	if b.from != 0 {
		size += protowire.SizeTag(fieldFrom) + protowire.SizeVarint(b.from)
	}
	for _, n := range b.sizes {
		size += protowire.SizeTag(fieldMessages) + protowire.SizeBytes(n)
	}
	if b.clientAddress != "" {
		size += protowire.SizeTag(fieldClientAddress) + protowire.SizeBytes(len(b.clientAddress))
	}
	var (
		pool mem.BufferPool
		ref  *[]byte
		out  []byte
	)
	if mem.IsBelowBufferPoolingThreshold(size) {
		out = make([]byte, 0, size)
	} else {
		pool = mem.DefaultBufferPool()
		ref = pool.Get(size)
		out = (*ref)[:0]
	}
	fail := func(err error) (mem.BufferSlice, error) {
		if ref != nil {
			pool.Put(ref)
		}
		return nil, err
	}
	if b.clusterID != 0 {
		out = protowire.AppendTag(out, fieldClusterID, protowire.VarintType)
		out = protowire.AppendVarint(out, b.clusterID)
	}
	if b.from != 0 {
		out = protowire.AppendTag(out, fieldFrom, protowire.VarintType)
		out = protowire.AppendVarint(out, b.from)
	}
	for i, m := range b.msgs {
		out = protowire.AppendTag(out, fieldMessages, protowire.BytesType)
		out = protowire.AppendVarint(out, uint64(b.sizes[i]))
		start := len(out)
		var err error
		if out, err = (proto.MarshalOptions{}).MarshalAppend(out, m); err != nil {
			return fail(fmt.Errorf("encode raft message: %w", err))
		}
		if len(out)-start != b.sizes[i] {
			// The message changed after add measured it: its length
			// prefix would be wrong.
			return fail(fmt.Errorf("encode raft message: %d bytes, measured %d", len(out)-start, b.sizes[i]))
		}
	}
	if b.clientAddress != "" {
		out = protowire.AppendTag(out, fieldClientAddress, protowire.BytesType)
		out = protowire.AppendString(out, b.clientAddress)
	}
	if len(out) != size {
		return fail(fmt.Errorf("encode raft stream request: %d bytes, expected %d", len(out), size))
	}
	if ref == nil {
		return mem.BufferSlice{mem.SliceBuffer(out)}, nil
	}
	*ref = out
	return mem.BufferSlice{mem.NewBuffer(ref, pool)}, nil
}

// inBatch is one received StreamRequest with its messages decoded. The
// messages own their memory (proto.Unmarshal copies): nothing refers to
// the received bytes, which go back to gRPC's pool.
type inBatch struct {
	clusterID, from uint64
	clientAddress   string
	msgs            []*raftpb.Message
}

var errBadStreamRequest = errors.New("malformed raft stream request")

// decode parses a StreamRequest in any valid protobuf encoding (fields in
// any order, a repeated scalar's last value winning, unknown fields
// skipped), as the generated code would.
func (in *inBatch) decode(b []byte) error {
	clear(in.msgs)
	*in = inBatch{msgs: in.msgs[:0]}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %v", errBadStreamRequest, protowire.ParseError(n))
		}
		if num > protowire.MaxValidNumber {
			return fmt.Errorf("%w: field number %d out of range", errBadStreamRequest, num)
		}
		b = b[n:]
		switch {
		case (num == fieldClusterID || num == fieldFrom) && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			if num == fieldClusterID {
				in.clusterID = v
			} else {
				in.from = v
			}
		case num == fieldMessages && typ == protowire.BytesType:
			if len(in.msgs) == maxBatchMessages {
				return fmt.Errorf("%w: more than %d messages", errBadStreamRequest, maxBatchMessages)
			}
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n >= 0 {
				m := &raftpb.Message{}
				if err := proto.Unmarshal(v, m); err != nil {
					return fmt.Errorf("decode raft message: %w", err)
				}
				in.msgs = append(in.msgs, m)
			}
		case num == fieldClientAddress && typ == protowire.BytesType:
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n >= 0 {
				if !utf8.Valid(v) {
					return fmt.Errorf("%w: client_address is not UTF-8", errBadStreamRequest)
				}
				in.clientAddress = string(v)
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("%w: field %d: %v", errBadStreamRequest, num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}
