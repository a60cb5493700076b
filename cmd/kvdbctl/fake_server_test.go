package main

import (
	"bytes"
	"context"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// fakeServer is a tiny in-memory KVService + AdminService: enough semantics
// (revisions, prefixes, ranges, NOT_FOUND) to check what kvdbctl sends and
// how it prints the answers, without the real server.
type fakeServer struct {
	kvdbv1.UnimplementedKVServiceServer
	kvdbv1.UnimplementedAdminServiceServer

	mu       sync.Mutex
	kvs      map[string]*kvdbv1.KeyValue
	revision int64
	// lastConsistency is the consistency of the last Get or Range.
	lastConsistency kvdbv1.Consistency
	// failWith, when set, is returned by every RPC.
	failWith error
	// follower makes Status say the node does not lead.
	follower bool
}

func newFakeServer() *fakeServer {
	return &fakeServer{kvs: map[string]*kvdbv1.KeyValue{}}
}

// startServer serves a fresh fake on 127.0.0.1:0 and returns it with its
// address; the server stops when the test ends.
func startServer(t *testing.T) (*fakeServer, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	fs := newFakeServer()
	gs := grpc.NewServer()
	kvdbv1.RegisterKVServiceServer(gs, fs)
	kvdbv1.RegisterAdminServiceServer(gs, fs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return fs, lis.Addr().String()
}

// closedAddress returns an address nobody listens on.
func closedAddress(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

func (f *fakeServer) header() *kvdbv1.ResponseHeader {
	return &kvdbv1.ResponseHeader{ClusterId: 7, MemberId: 42, Revision: f.revision, RaftTerm: 2}
}

func (f *fakeServer) set(key, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.putLocked([]byte(key), []byte(value))
}

func (f *fakeServer) value(key string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	kv, ok := f.kvs[key]
	if !ok {
		return "", false
	}
	return string(kv.GetValue()), true
}

func (f *fakeServer) setFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failWith = err
}

func (f *fakeServer) consistency() kvdbv1.Consistency {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastConsistency
}

func (f *fakeServer) putLocked(key, value []byte) *kvdbv1.KeyValue {
	f.revision++
	prev := f.kvs[string(key)]
	kv := &kvdbv1.KeyValue{Key: key, Value: value, CreateRevision: f.revision, ModRevision: f.revision, Version: 1}
	if prev != nil {
		kv.CreateRevision, kv.Version = prev.GetCreateRevision(), prev.GetVersion()+1
	}
	f.kvs[string(key)] = kv
	return prev
}

// matchLocked returns the keys in [key, end) (or with prefix key), sorted.
func (f *fakeServer) matchLocked(key, end []byte, prefix bool) []string {
	var out []string
	for k := range f.kvs {
		b := []byte(k)
		switch {
		case prefix:
			if !bytes.HasPrefix(b, key) {
				continue
			}
		case len(end) == 0:
			if !bytes.Equal(b, key) {
				continue
			}
		case bytes.Equal(end, []byte{0}):
			if bytes.Compare(b, key) < 0 {
				continue
			}
		default:
			if bytes.Compare(b, key) < 0 || bytes.Compare(b, end) >= 0 {
				continue
			}
		}
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (f *fakeServer) Get(_ context.Context, req *kvdbv1.GetRequest) (*kvdbv1.GetResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return nil, f.failWith
	}
	f.lastConsistency = req.GetConsistency()
	kv, ok := f.kvs[string(req.GetKey())]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "key %q not found", req.GetKey())
	}
	return &kvdbv1.GetResponse{Header: f.header(), Kv: proto.Clone(kv).(*kvdbv1.KeyValue)}, nil
}

func (f *fakeServer) Put(_ context.Context, req *kvdbv1.PutRequest) (*kvdbv1.PutResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return nil, f.failWith
	}
	if len(req.GetKey()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "key must not be empty")
	}
	prev := f.putLocked(req.GetKey(), req.GetValue())
	resp := &kvdbv1.PutResponse{Header: f.header()}
	if req.GetPrevKv() && prev != nil {
		resp.PrevKv = prev
	}
	return resp, nil
}

func (f *fakeServer) Delete(_ context.Context, req *kvdbv1.DeleteRequest) (*kvdbv1.DeleteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return nil, f.failWith
	}
	keys := f.matchLocked(req.GetKey(), req.GetRangeEnd(), req.GetPrefix())
	if len(keys) > 0 {
		f.revision++
	}
	for _, k := range keys {
		delete(f.kvs, k)
	}
	return &kvdbv1.DeleteResponse{Header: f.header(), Deleted: int64(len(keys))}, nil
}

func (f *fakeServer) Range(_ context.Context, req *kvdbv1.RangeRequest) (*kvdbv1.RangeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return nil, f.failWith
	}
	f.lastConsistency = req.GetConsistency()
	keys := f.matchLocked(req.GetKey(), req.GetRangeEnd(), req.GetPrefix())
	resp := &kvdbv1.RangeResponse{Header: f.header(), Count: int64(len(keys))}
	if req.GetCountOnly() {
		return resp, nil
	}
	if n := req.GetLimit(); n > 0 && int64(len(keys)) > n {
		keys, resp.More = keys[:n], true
	}
	for _, k := range keys {
		kv := proto.Clone(f.kvs[k]).(*kvdbv1.KeyValue)
		if req.GetKeysOnly() {
			kv.Value = nil
		}
		resp.Kvs = append(resp.Kvs, kv)
	}
	return resp, nil
}

func (f *fakeServer) Batch(_ context.Context, req *kvdbv1.BatchRequest) (*kvdbv1.BatchResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return nil, f.failWith
	}
	resp := &kvdbv1.BatchResponse{}
	for _, op := range req.GetOps() {
		switch {
		case op.GetPut() != nil:
			f.putLocked(op.GetPut().GetKey(), op.GetPut().GetValue())
			resp.Puts++
		case op.GetDelete() != nil:
			k := string(op.GetDelete().GetKey())
			if _, ok := f.kvs[k]; ok {
				delete(f.kvs, k)
				resp.Deleted++
			}
		}
	}
	resp.Header = f.header()
	return resp, nil
}

func (f *fakeServer) Status(context.Context, *kvdbv1.StatusRequest) (*kvdbv1.StatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return nil, f.failWith
	}
	return &kvdbv1.StatusResponse{
		Header: f.header(), NodeId: "node1", IsLeader: !f.follower, LeaderId: "node1",
		Term: 2, CommitIndex: 10, AppliedIndex: 10, RaftState: "leader",
		Version: "test", Keys: int64(len(f.kvs)), MemoryUsage: 1234, DataDir: "/data",
		LeaderMemberId: 42,
	}, nil
}

func (f *fakeServer) Stats(context.Context, *kvdbv1.StatsRequest) (*kvdbv1.StatsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return nil, f.failWith
	}
	return &kvdbv1.StatsResponse{
		Header:  f.header(),
		Storage: &kvdbv1.StorageStats{Keys: int64(len(f.kvs)), MemoryUsage: 52428800, MaxMemory: 1073741824, Version: f.revision},
		Network: &kvdbv1.NetworkStats{ActiveConnections: 12, TotalRequests: 98765, Address: ":8080"},
		Raft:    &kvdbv1.RaftStats{NodeId: "node1", State: 2, CurrentTerm: 5, LeaderId: "node1", LogLength: 1543, CommitIndex: 1543},
		Metrics: &kvdbv1.OperationMetrics{
			UptimeSeconds: 3600.5,
			Operations: map[string]*kvdbv1.OperationStats{
				"GET": {Count: 45231, OpsPerSec: 12.56, AvgLatency: 45, P95Latency: 89, P99Latency: 145},
				"PUT": {Count: 10, OpsPerSec: 0.5, AvgLatency: 60, P95Latency: 90, P99Latency: 120},
			},
		},
	}, nil
}

// runCLI runs kvdbctl in-process with the given environment and stdin and
// returns what it printed and its exit status.
func runCLI(t *testing.T, env map[string]string, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	getenv := func(k string) string { return env[k] }
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errOut, getenv)
	return out.String(), errOut.String(), code
}
