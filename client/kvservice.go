package client

import (
	"context"

	"google.golang.org/grpc"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/wire"
)

// KVService returns the Client as a kvdbv1.KVServiceClient, so code written
// against the gRPC stubs (kvdbctl, for one) runs over either transport with
// the Client's pooling, retries and deadlines. CallOptions are ignored.
func (c *Client) KVService() kvdbv1.KVServiceClient { return kvAdapter{c} }

type kvAdapter struct{ c *Client }

func readFlagsOf(cons kvdbv1.Consistency) uint8 {
	if cons == kvdbv1.Consistency_CONSISTENCY_SERIALIZABLE {
		return wire.FlagSerializable
	}
	return 0
}

func hdr(rev int64) *kvdbv1.ResponseHeader { return &kvdbv1.ResponseHeader{Revision: rev} }

func toProto(kv wire.KeyValue) *kvdbv1.KeyValue {
	return &kvdbv1.KeyValue{Key: kv.Key, Value: kv.Value, CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version}
}

func (a kvAdapter) Get(ctx context.Context, in *kvdbv1.GetRequest, _ ...grpc.CallOption) (*kvdbv1.GetResponse, error) {
	resp, err := a.c.do(ctx, &wire.Request{Op: wire.OpGet, Flags: readFlagsOf(in.GetConsistency()), Key: in.GetKey()})
	if err != nil {
		return nil, err
	}
	return &kvdbv1.GetResponse{Header: hdr(resp.Revision), Kv: toProto(resp.KV)}, nil
}

func (a kvAdapter) Put(ctx context.Context, in *kvdbv1.PutRequest, _ ...grpc.CallOption) (*kvdbv1.PutResponse, error) {
	req := &wire.Request{Op: wire.OpPut, Key: in.GetKey(), Value: in.GetValue()}
	if in.GetPrevKv() {
		req.Flags |= wire.FlagPrevKV
	}
	resp, err := a.c.do(ctx, req)
	if err != nil {
		return nil, err
	}
	out := &kvdbv1.PutResponse{Header: hdr(resp.Revision)}
	if resp.Flags&wire.FlagHasPrevKV != 0 {
		out.PrevKv = toProto(resp.KV)
	}
	return out, nil
}

func (a kvAdapter) Delete(ctx context.Context, in *kvdbv1.DeleteRequest, _ ...grpc.CallOption) (*kvdbv1.DeleteResponse, error) {
	req := &wire.Request{Op: wire.OpDelete, Key: in.GetKey(), End: in.GetRangeEnd()}
	if in.GetPrevKv() {
		req.Flags |= wire.FlagPrevKV
	}
	if in.GetPrefix() {
		req.Flags |= wire.FlagPrefix
	}
	resp, err := a.c.do(ctx, req)
	if err != nil {
		return nil, err
	}
	out := &kvdbv1.DeleteResponse{Header: hdr(resp.Revision), Deleted: resp.Deleted}
	for _, kv := range resp.KVs {
		out.PrevKvs = append(out.PrevKvs, toProto(kv))
	}
	return out, nil
}

func (a kvAdapter) Range(ctx context.Context, in *kvdbv1.RangeRequest, _ ...grpc.CallOption) (*kvdbv1.RangeResponse, error) {
	req := &wire.Request{Op: wire.OpRange, Flags: readFlagsOf(in.GetConsistency()), Key: in.GetKey(), End: in.GetRangeEnd(), Limit: in.GetLimit()}
	if in.GetPrefix() {
		req.Flags |= wire.FlagPrefix
	}
	if in.GetKeysOnly() {
		req.Flags |= wire.FlagKeysOnly
	}
	if in.GetCountOnly() {
		req.Flags |= wire.FlagCountOnly
	}
	resp, err := a.c.do(ctx, req)
	if err != nil {
		return nil, err
	}
	out := &kvdbv1.RangeResponse{Header: hdr(resp.Revision), More: resp.More, Count: resp.Count}
	for _, kv := range resp.KVs {
		out.Kvs = append(out.Kvs, toProto(kv))
	}
	return out, nil
}

func (a kvAdapter) Batch(ctx context.Context, in *kvdbv1.BatchRequest, _ ...grpc.CallOption) (*kvdbv1.BatchResponse, error) {
	req := &wire.Request{Op: wire.OpBatch}
	for _, op := range in.GetOps() {
		if d := op.GetDelete(); d != nil {
			req.Ops = append(req.Ops, wire.BatchOp{Type: wire.BatchDelete, Key: d.GetKey()})
		} else {
			req.Ops = append(req.Ops, wire.BatchOp{Type: wire.BatchPut, Key: op.GetPut().GetKey(), Value: op.GetPut().GetValue()})
		}
	}
	resp, err := a.c.do(ctx, req)
	if err != nil {
		return nil, err
	}
	return &kvdbv1.BatchResponse{Header: hdr(resp.Revision), Puts: resp.Puts, Deleted: resp.Deleted}, nil
}
