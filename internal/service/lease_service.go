package service

import (
	"context"
	"errors"
	"io"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/core"
)

// leaseService implements kvdbv1.LeaseServiceServer over core's leases.
type leaseService struct {
	kvdbv1.UnimplementedLeaseServiceServer
	s *Server
}

func (l *leaseService) LeaseGrant(ctx context.Context, req *kvdbv1.LeaseGrantRequest) (*kvdbv1.LeaseGrantResponse, error) {
	id, ttl, err := l.s.core.LeaseGrant(ctx, req.GetTtl(), req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.LeaseGrantResponse{Header: l.s.header(l.s.store.Revision()), Id: id, Ttl: ttl}, nil
}

func (l *leaseService) LeaseRevoke(ctx context.Context, req *kvdbv1.LeaseRevokeRequest) (*kvdbv1.LeaseRevokeResponse, error) {
	rev, err := l.s.core.LeaseRevoke(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.LeaseRevokeResponse{Header: l.s.header(rev)}, nil
}

// LeaseKeepAlive answers each request in order. A lease that does not
// exist gets ttl 0, as in etcd; a follower ends the stream with the
// not-leader error naming the leader.
func (l *leaseService) LeaseKeepAlive(stream kvdbv1.LeaseService_LeaseKeepAliveServer) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		ttl, err := l.s.core.LeaseKeepAlive(ctx, req.GetId())
		if err != nil && !errors.Is(err, core.ErrLeaseNotFound) {
			return toStatus(err)
		}
		if err := stream.Send(&kvdbv1.LeaseKeepAliveResponse{Header: l.s.header(l.s.store.Revision()), Id: req.GetId(), Ttl: ttl}); err != nil {
			return err
		}
	}
}

func (l *leaseService) LeaseTimeToLive(ctx context.Context, req *kvdbv1.LeaseTimeToLiveRequest) (*kvdbv1.LeaseTimeToLiveResponse, error) {
	st, err := l.s.core.LeaseTimeToLive(ctx, req.GetId(), req.GetKeys())
	if errors.Is(err, core.ErrLeaseNotFound) {
		return &kvdbv1.LeaseTimeToLiveResponse{Header: l.s.header(l.s.store.Revision()), Id: req.GetId(), Ttl: -1}, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.LeaseTimeToLiveResponse{Header: l.s.header(l.s.store.Revision()), Id: st.ID, Ttl: st.TTL,
		GrantedTtl: st.GrantedTTL, Keys: st.Keys}, nil
}

func (l *leaseService) LeaseLeases(ctx context.Context, req *kvdbv1.LeaseLeasesRequest) (*kvdbv1.LeaseLeasesResponse, error) {
	if req.GetLimit() < 0 {
		return nil, toStatus(core.Errorf(core.InvalidArgument, "limit must not be negative"))
	}
	ids, more, err := l.s.core.Leases(ctx, req.GetAfter(), int(min(req.GetLimit(), 1<<30)))
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &kvdbv1.LeaseLeasesResponse{Header: l.s.header(l.s.store.Revision()), Leases: make([]*kvdbv1.LeaseStatus, len(ids)), More: more}
	statuses := make([]kvdbv1.LeaseStatus, len(ids)) // one allocation for the page
	for i, id := range ids {
		statuses[i].Id = id
		resp.Leases[i] = &statuses[i]
	}
	return resp, nil
}
