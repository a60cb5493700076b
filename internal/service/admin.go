package service

import (
	"context"

	"go.etcd.io/raft/v3"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
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
	}, nil
}

func (a *adminService) Stats(ctx context.Context, _ *kvdbv1.StatsRequest) (*kvdbv1.StatsResponse, error) {
	return a.s.Stats(), nil
}

// Stats builds the STATS sections; the binary protocol serves the same.
func (s *Server) Stats() *kvdbv1.StatsResponse {
	st := s.node.Status()
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
			Keys:        int64(s.store.Len()),
			MemoryUsage: s.store.MemoryUsage(),
			MaxMemory:   s.cfg.MaxMemory,
			Version:     s.store.Revision(),
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
		},
		Metrics: m,
		Transactions: &kvdbv1.TransactionStats{
			Commits: s.txns.commits.Load(),
			Aborts:  s.txns.aborts.Load(),
			Active:  int64(s.txns.activeCount()),
			Expired: s.txns.expiredN.Load(),
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
