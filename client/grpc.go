package client

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/wire"
)

// grpcConn is one gRPC connection with its stubs.
type grpcConn struct {
	conn  *grpc.ClientConn
	kv    kvdbv1.KVServiceClient
	admin kvdbv1.AdminServiceClient
	lease kvdbv1.LeaseServiceClient
}

func dialGRPC(addr string, d *dialer) (*grpcConn, error) {
	creds := insecure.NewCredentials()
	if d.tls != nil {
		creds = credentials.NewTLS(d.tls)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(wire.MaxResponseFrameSize))}
	if d.tokens != nil {
		opts = append(opts, grpc.WithChainUnaryInterceptor(d.tokens.unary), grpc.WithChainStreamInterceptor(d.tokens.stream))
	}
	conn, err := grpc.NewClient(Target(addr), opts...)
	if err != nil {
		return nil, fmt.Errorf("kvdb: dial %s: %w", addr, err)
	}
	return &grpcConn{conn: conn, kv: kvdbv1.NewKVServiceClient(conn), admin: kvdbv1.NewAdminServiceClient(conn),
		lease: kvdbv1.NewLeaseServiceClient(conn)}, nil
}

func consistency(flags uint8) kvdbv1.Consistency {
	if flags&wire.FlagSerializable != 0 {
		return kvdbv1.Consistency_CONSISTENCY_SERIALIZABLE
	}
	return kvdbv1.Consistency_CONSISTENCY_UNSPECIFIED
}

func fromProtoKV(kv *kvdbv1.KeyValue) wire.KeyValue {
	return wire.KeyValue{Key: kv.GetKey(), Value: kv.GetValue(), CreateRevision: kv.GetCreateRevision(), ModRevision: kv.GetModRevision(), Version: kv.GetVersion()}
}

// do runs one request over gRPC and answers in the binary protocol's terms,
// so the Client has one code path for both transports.
func (g *grpcConn) do(ctx context.Context, req *wire.Request) (*wire.Response, error) {
	resp := &wire.Response{Op: req.Op, ID: req.ID}
	var err error
	switch req.Op {
	case wire.OpPing:
		_, err = g.admin.Status(ctx, &kvdbv1.StatusRequest{})
		resp.Payload = req.Payload
	case wire.OpGet:
		var r *kvdbv1.GetResponse
		r, err = g.kv.Get(ctx, &kvdbv1.GetRequest{Key: req.Key, Consistency: consistency(req.Flags)})
		resp.Revision, resp.KV = r.GetHeader().GetRevision(), fromProtoKV(r.GetKv())
	case wire.OpPut:
		var r *kvdbv1.PutResponse
		r, err = g.kv.Put(ctx, &kvdbv1.PutRequest{Key: req.Key, Value: req.Value, PrevKv: req.Flags&wire.FlagPrevKV != 0})
		resp.Revision = r.GetHeader().GetRevision()
		if r.GetPrevKv() != nil {
			resp.Flags, resp.KV = wire.FlagHasPrevKV, fromProtoKV(r.GetPrevKv())
		}
	case wire.OpDelete:
		var r *kvdbv1.DeleteResponse
		r, err = g.kv.Delete(ctx, &kvdbv1.DeleteRequest{Key: req.Key, RangeEnd: req.End, PrevKv: req.Flags&wire.FlagPrevKV != 0, Prefix: req.Flags&wire.FlagPrefix != 0})
		resp.Revision, resp.Deleted = r.GetHeader().GetRevision(), r.GetDeleted()
		for _, kv := range r.GetPrevKvs() {
			resp.KVs = append(resp.KVs, fromProtoKV(kv))
		}
	case wire.OpRange:
		var r *kvdbv1.RangeResponse
		r, err = g.kv.Range(ctx, &kvdbv1.RangeRequest{Key: req.Key, RangeEnd: req.End, Limit: req.Limit, Consistency: consistency(req.Flags),
			Prefix: req.Flags&wire.FlagPrefix != 0, KeysOnly: req.Flags&wire.FlagKeysOnly != 0, CountOnly: req.Flags&wire.FlagCountOnly != 0})
		resp.Revision, resp.Count, resp.More = r.GetHeader().GetRevision(), r.GetCount(), r.GetMore()
		for _, kv := range r.GetKvs() {
			resp.KVs = append(resp.KVs, fromProtoKV(kv))
		}
	case wire.OpBatch:
		b := &kvdbv1.BatchRequest{}
		for _, op := range req.Ops {
			if op.Type == wire.BatchDelete {
				b.Ops = append(b.Ops, &kvdbv1.BatchOp{Op: &kvdbv1.BatchOp_Delete{Delete: &kvdbv1.BatchDelete{Key: op.Key}}})
			} else {
				b.Ops = append(b.Ops, &kvdbv1.BatchOp{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: op.Key, Value: op.Value}}})
			}
		}
		var r *kvdbv1.BatchResponse
		r, err = g.kv.Batch(ctx, b)
		resp.Revision, resp.Puts, resp.Deleted = r.GetHeader().GetRevision(), r.GetPuts(), r.GetDeleted()
	case wire.OpStats:
		var r *kvdbv1.StatsResponse
		r, err = g.admin.Stats(ctx, &kvdbv1.StatsRequest{})
		if err == nil {
			resp.Payload, err = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(r)
		}
	default:
		return nil, &Error{Code: 12, Message: fmt.Sprintf("%s is not available over gRPC in this client", req.Op)}
	}
	if err != nil {
		return nil, grpcErr(err)
	}
	return resp, nil
}

// Target is the gRPC target for a host:port address: dialled by Go's own
// dialer ("passthrough"), which tries every address a name resolves to in
// turn. With gRPC's default DNS resolver, "localhost" resolving to ::1 and
// 127.0.0.1 against a node listening on 127.0.0.1 only stalled some of a
// pool's connections until their requests' deadlines.
func Target(addr string) string {
	if strings.Contains(addr, "://") || strings.HasPrefix(addr, "unix:") {
		return addr
	}
	return "passthrough:///" + addr
}
