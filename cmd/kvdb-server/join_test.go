package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/raftnode"
)

// fakeCluster answers MemberList and MemberAdd as a cluster's leader does.
type fakeCluster struct {
	kvdbv1.UnimplementedAdminServiceServer
	mu      sync.Mutex
	members []*kvdbv1.Member
	adds    int
}

func (f *fakeCluster) MemberList(context.Context, *kvdbv1.MemberListRequest) (*kvdbv1.MemberListResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &kvdbv1.MemberListResponse{Header: &kvdbv1.ResponseHeader{ClusterId: 7}, Members: f.members}, nil
}

func (f *fakeCluster) MemberAdd(_ context.Context, req *kvdbv1.MemberAddRequest) (*kvdbv1.MemberAddResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.adds++
	for _, m := range f.members {
		if m.GetName() == req.GetName() {
			return nil, status.Error(codes.AlreadyExists, "raftnode: the member is already in the cluster: member 2 is already a voter (member names are unique)")
		}
	}
	m := &kvdbv1.Member{Id: uint64(len(f.members) + 1), Name: req.GetName(), Address: req.GetAddress(), PeerAddress: req.GetPeerAddress()}
	f.members = append(f.members, m)
	return &kvdbv1.MemberAddResponse{Header: &kvdbv1.ResponseHeader{ClusterId: 7}, Member: m, Members: f.members}, nil
}

// TestJoinUnderATakenName: -join with the name of a member the cluster
// knows at another address fails at once with ALREADY_EXISTS naming the
// member and both addresses; a name the cluster holds at this node's own
// address (an earlier attempt, or member add) and a new name join.
func TestJoinUnderATakenName(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	fake := &fakeCluster{}
	srv := grpc.NewServer()
	kvdbv1.RegisterAdminServiceServer(srv, fake)
	go srv.Serve(lis)
	defer srv.Stop()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	for _, tc := range []struct {
		name    string
		self    raftnode.Member
		wantErr []string // empty: the join succeeds
		adds    int      // MemberAdd calls expected
	}{
		{name: "name of a running member", self: raftnode.Member{Name: "n2", Address: "127.0.0.1:22106"},
			wantErr: []string{`member named "n2"`, "127.0.0.1:22102", "127.0.0.1:22106", "-node-id of its own", "member remove n2"}},
		{name: "same address, other peer address", self: raftnode.Member{Name: "n2", Address: "127.0.0.1:22102", PeerAddress: "127.0.0.1:7002"},
			wantErr: []string{`member named "n2"`, "peer address 127.0.0.1:7002"}},
		{name: "added for this node", self: raftnode.Member{Name: "n2", Address: "127.0.0.1:22102"}},
		{name: "new name", self: raftnode.Member{Name: "n4", Address: "127.0.0.1:22104"}, adds: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake.mu.Lock()
			fake.members = []*kvdbv1.Member{
				{Id: 1, Name: "n1", Address: addr, IsLeader: true},
				{Id: 2, Name: "n2", Address: "127.0.0.1:22102"},
			}
			fake.adds = 0
			fake.mu.Unlock()
			members, cid, err := joinCluster(context.Background(), log, addr, tc.self, nil, "", "")
			fake.mu.Lock()
			adds := fake.adds
			fake.mu.Unlock()
			if adds != tc.adds {
				t.Errorf("%d MemberAdd calls, want %d", adds, tc.adds)
			}
			if len(tc.wantErr) > 0 {
				if status.Code(err) != codes.AlreadyExists {
					t.Fatalf("join = %v, want ALREADY_EXISTS", err)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				return
			}
			if err != nil || cid != 7 || len(members) < 2 {
				t.Fatalf("join = %v, %d, %v", members, cid, err)
			}
		})
	}
}
