package service

import (
	"context"
	"fmt"
	"hash/fnv"
	"net"
	"slices"
	"strings"
	"time"
	"unicode"

	"go.etcd.io/raft/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/core"
	"github.com/kvdb/kvdb/internal/raftnode"
)

// adminService implements kvdbv1.AdminServiceServer.
type adminService struct {
	kvdbv1.UnimplementedAdminServiceServer
	s *Server
}

func (a *adminService) Status(ctx context.Context, _ *kvdbv1.StatusRequest) (*kvdbv1.StatusResponse, error) {
	s := a.s
	st := s.node.Status()
	return &kvdbv1.StatusResponse{
		Header:         s.header(s.store.Revision()),
		NodeId:         s.cfg.NodeID,
		IsLeader:       st.State == raft.StateLeader,
		LeaderId:       s.memberName(st.Leader),
		LeaderMemberId: st.Leader,
		Term:           st.Term,
		CommitIndex:    st.Commit,
		AppliedIndex:   st.Applied,
		RaftState:      stateName(st.State),
		Version:        s.cfg.Version,
		Keys:           int64(s.store.Len()),
		MemoryUsage:    s.store.MemoryUsage(),
		DataDir:        s.cfg.DataDir,
		ClientAddress:  s.node.ClientAddress(),
	}, nil
}

func (a *adminService) Stats(ctx context.Context, _ *kvdbv1.StatsRequest) (*kvdbv1.StatsResponse, error) {
	return a.s.Stats(), nil
}

// Stats builds the STATS sections; the binary protocol serves the same.
func (s *Server) Stats() *kvdbv1.StatsResponse {
	st := s.node.Status()
	active, commits, aborts, expired := s.core.TxnStats()
	uptime, ops := s.ops.snapshot()
	m := &kvdbv1.OperationMetrics{UptimeSeconds: uptime.Seconds(), Operations: map[string]*kvdbv1.OperationStats{}}
	for _, o := range ops {
		m.Operations[o.Name] = &kvdbv1.OperationStats{
			Count: o.Count, OpsPerSec: o.OpsPerSec, AvgLatency: o.AvgUs, P95Latency: o.P95Us, P99Latency: o.P99Us,
		}
	}
	return &kvdbv1.StatsResponse{
		Header: s.header(s.store.Revision()),
		Storage: &kvdbv1.StorageStats{
			Keys:           int64(s.store.Len()),
			MemoryUsage:    s.store.MemoryUsage(),
			MaxMemory:      s.cfg.MaxMemory,
			Version:        s.store.Revision(),
			EvictedKeys:    int64(s.store.EvictedKeys()),
			EvictionPolicy: string(s.cfg.EvictionPolicy),
			ExpiredKeys:    int64(s.store.ExpiredKeys()),
		},
		Network: &kvdbv1.NetworkStats{
			ActiveConnections: s.conns.Load(),
			TotalRequests:     s.ops.total.Load(),
			Address:           s.cfg.Address,
		},
		Raft: &kvdbv1.RaftStats{
			NodeId:      s.cfg.NodeID,
			State:       int32(st.State),
			CurrentTerm: st.Term,
			LeaderId:    s.memberName(st.Leader),
			LogLength:   st.LastIndex,
			CommitIndex: st.Commit,
			StateName:   stateName(st.State),
		},
		Metrics: m,
		Transactions: &kvdbv1.TransactionStats{
			Commits: commits,
			Aborts:  aborts,
			Active:  int64(active),
			Expired: expired,
		},
	}
}

func stateName(st raft.StateType) string {
	switch st {
	case raft.StateFollower:
		return "follower"
	case raft.StateCandidate:
		return "candidate"
	case raft.StatePreCandidate:
		return "pre-candidate"
	case raft.StateLeader:
		return "leader"
	}
	return "unknown"
}

func (a *adminService) MemberList(ctx context.Context, _ *kvdbv1.MemberListRequest) (*kvdbv1.MemberListResponse, error) {
	ms := a.s.members()
	// The leader adds what its progress tracker knows of each member.
	if reach := a.s.node.Reachability(ctx); reach != nil {
		for _, m := range ms {
			r, ok := reach[m.GetId()]
			if !ok {
				continue
			}
			m.Reachable = &r.Active
			if !r.LastContact.IsZero() {
				age := time.Since(r.LastContact).Milliseconds()
				m.LastContactMs = &age
			}
		}
	}
	return &kvdbv1.MemberListResponse{Header: a.s.header(a.s.store.Revision()), Members: ms}, nil
}

func (s *Server) members() []*kvdbv1.Member {
	lead := s.node.Status().Leader
	var out []*kvdbv1.Member
	for _, m := range s.node.Members() {
		out = append(out, &kvdbv1.Member{Id: m.ID, Name: m.Name, Address: m.Address, PeerAddress: m.PeerAddress, IsLeader: m.ID == lead, IsLearner: m.Learner,
			ClientAddress: s.node.ClientAddressOf(m.ID)})
	}
	return out
}

func (a *adminService) MemberAdd(ctx context.Context, req *kvdbv1.MemberAddRequest) (*kvdbv1.MemberAddResponse, error) {
	name, addr := strings.TrimSpace(req.GetName()), strings.TrimSpace(req.GetAddress())
	if name == "" || addr == "" {
		return nil, toStatus(core.Errorf(core.InvalidArgument, "a new member needs a name and an address"))
	}
	// The name is the new node's -node-id, and in a peer certificate its
	// DNS name: no spaces or control characters.
	if len(name) > 253 || strings.ContainsFunc(name, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) {
		return nil, toStatus(core.Errorf(core.InvalidArgument, "member name %q: at most 253 printable characters, no spaces (it is the new node's -node-id)", name))
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, toStatus(core.Errorf(core.InvalidArgument, "address %q: %v", addr, err))
	}
	peerAddr := strings.TrimSpace(req.GetPeerAddress())
	if peerAddr != "" {
		if _, _, err := net.SplitHostPort(peerAddr); err != nil {
			return nil, toStatus(core.Errorf(core.InvalidArgument, "peer address %q: %v", peerAddr, err))
		}
	}
	if a.s.transport != nil && !a.s.cfg.Peer.Enabled {
		return nil, status.Error(codes.FailedPrecondition, "this node runs standalone and accepts no peer traffic: restart it with -enable-raft and peer authentication to add members")
	}
	m := raftnode.Member{ID: MemberID(name), Name: name, Address: addr, PeerAddress: peerAddr}
	if err := a.s.node.AddMember(ctx, m); err != nil {
		return nil, toStatus(err)
	}
	// raftnode logs the change itself on every member; this is the request.
	a.s.log.Debug("member added", "name", name, "address", addr, "member_id", fmt.Sprintf("%x", m.ID))
	return &kvdbv1.MemberAddResponse{
		Header:  a.s.header(a.s.store.Revision()),
		Member:  &kvdbv1.Member{Id: m.ID, Name: m.Name, Address: m.Address, PeerAddress: m.PeerAddress},
		Members: a.s.members(),
	}, nil
}

func (a *adminService) MemberRemove(ctx context.Context, req *kvdbv1.MemberRemoveRequest) (*kvdbv1.MemberRemoveResponse, error) {
	id, err := a.s.resolveMember(req.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := a.s.node.RemoveMember(ctx, id); err != nil {
		return nil, toStatus(err)
	}
	// raftnode logs the change itself on every member; this is the request.
	a.s.log.Debug("member removed", "name", req.GetName(), "member_id", fmt.Sprintf("%x", id))
	return &kvdbv1.MemberRemoveResponse{Header: a.s.header(a.s.store.Revision()), Members: a.s.members()}, nil
}

func (a *adminService) TransferLeader(ctx context.Context, req *kvdbv1.TransferLeaderRequest) (*kvdbv1.TransferLeaderResponse, error) {
	var target uint64
	if req.GetName() != "" {
		id, err := a.s.resolveMember(req.GetName())
		if err != nil {
			return nil, toStatus(err)
		}
		target = id
	}
	lead, err := a.s.node.TransferLeadership(ctx, target)
	if err != nil {
		return nil, toStatus(err)
	}
	// raftnode logs the change itself on every member; this is the request.
	a.s.log.Debug("leadership transferred", "to", a.s.memberName(lead))
	return &kvdbv1.TransferLeaderResponse{Header: a.s.header(a.s.store.Revision()), Leader: a.s.memberName(lead)}, nil
}

// resolveMember finds a current member by name, or by its id in hex.
func (s *Server) resolveMember(name string) (uint64, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return 0, core.Errorf(core.InvalidArgument, "member name must not be empty")
	}
	for _, m := range s.node.Members() {
		if m.Name == name || fmt.Sprintf("%x", m.ID) == strings.ToLower(name) {
			return m.ID, nil
		}
	}
	return 0, fmt.Errorf("%w: no member named %q", raftnode.ErrUnknownMember, name)
}

// MemberID derives a member's raft id from its name. Every node derives the
// same ids from the same names, which is what lets the README's
// -peers=node2:8080,node3:8080 form a cluster without ids on the command line.
func MemberID(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	if id := h.Sum64(); id != 0 {
		return id
	}
	return 1
}

// ClusterID derives the cluster id from the initial members' ids.
func ClusterID(members []uint64) uint64 {
	sorted := append([]uint64(nil), members...)
	slices.Sort(sorted)
	h := fnv.New64a()
	h.Write([]byte("kvdb-cluster"))
	for _, m := range sorted {
		fmt.Fprintf(h, ":%x", m)
	}
	return h.Sum64()
}
