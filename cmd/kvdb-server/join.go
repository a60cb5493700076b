package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	kvclient "github.com/kvdb/kvdb/client"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/raftnode"
)

// joinTimeout bounds the whole join handshake.
const joinTimeout = 30 * time.Second

// joinCluster asks a running cluster, through the member at addr, to add
// this node, and returns the membership and cluster id to start with. The
// leader is found through MemberList; transient errors are retried.
func joinCluster(ctx context.Context, log *slog.Logger, addr string, self raftnode.Member, tlsCfg *tls.Config, user, password string) ([]raftnode.Member, uint64, error) {
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if user != "" {
		opts = append(opts, grpc.WithChainUnaryInterceptor(kvclient.AuthInterceptor(user, password)))
	}
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	backoff := 200 * time.Millisecond
	for {
		members, cid, err := tryJoin(ctx, addr, self, opts)
		if err == nil {
			return members, cid, nil
		}
		code := status.Code(err)
		if code != codes.Unavailable && code != codes.FailedPrecondition && code != codes.DeadlineExceeded {
			return nil, 0, err
		}
		log.Warn("join attempt failed; retrying", "via", addr, "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("joining through %s: %w (last error: %v)", addr, ctx.Err(), err)
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func tryJoin(ctx context.Context, addr string, self raftnode.Member, opts []grpc.DialOption) ([]raftnode.Member, uint64, error) {
	name := self.Name
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, 0, err
	}
	defer conn.Close()
	list, err := kvdbv1.NewAdminServiceClient(conn).MemberList(ctx, &kvdbv1.MemberListRequest{})
	if err != nil {
		return nil, 0, err
	}
	leaderAddr := ""
	for _, m := range list.GetMembers() {
		if m.GetIsLeader() {
			leaderAddr = m.GetAddress()
		}
		if m.GetName() == name {
			if m.GetAddress() != self.Address || m.GetPeerAddress() != self.PeerAddress {
				return nil, 0, nameTaken(m, self)
			}
			// An earlier attempt got through (or the member was added for
			// this node); start with what is there.
			return toMembers(list.GetMembers()), list.GetHeader().GetClusterId(), nil
		}
	}
	if leaderAddr == "" {
		return nil, 0, status.Error(codes.Unavailable, "the cluster has no leader")
	}
	lconn := conn
	if leaderAddr != addr {
		if lconn, err = grpc.NewClient(leaderAddr, opts...); err != nil {
			return nil, 0, err
		}
		defer lconn.Close()
	}
	resp, err := kvdbv1.NewAdminServiceClient(lconn).MemberAdd(ctx, &kvdbv1.MemberAddRequest{Name: name, Address: self.Address, PeerAddress: self.PeerAddress})
	if err != nil {
		if strings.Contains(status.Convert(err).Message(), "already a voter") {
			return tryJoin(ctx, addr, self, opts)
		}
		return nil, 0, err
	}
	return toMembers(resp.GetMembers()), resp.GetHeader().GetClusterId(), nil
}

// nameTaken is the refusal of a join under the name of a member the
// cluster knows at another address: raft would run this node as that
// member, which is running, or waits to be started, elsewhere.
func nameTaken(m *kvdbv1.Member, self raftnode.Member) error {
	where, mine := m.GetAddress(), self.Address
	if m.GetPeerAddress() != "" || self.PeerAddress != "" {
		where += " (peer address " + m.GetPeerAddress() + ")"
		mine += " (peer address " + self.PeerAddress + ")"
	}
	return status.Errorf(codes.AlreadyExists,
		"the cluster already has a member named %q, at %s; this node advertises %s. A new member needs a -node-id of its own; "+
			"to replace %s, remove it first (kvdbctl member remove %s) and join under another name; "+
			"if %s was added for this node, start it with the address it was added with (-advertise-address, -advertise-peer-address)",
		m.GetName(), where, mine, m.GetName(), m.GetName(), m.GetName())
}

func toMembers(ms []*kvdbv1.Member) []raftnode.Member {
	out := make([]raftnode.Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, raftnode.Member{ID: m.GetId(), Name: m.GetName(), Address: m.GetAddress(), PeerAddress: m.GetPeerAddress()})
	}
	return out
}

// joinCredentials reads -join-password-file for -join-user.
func joinCredentials(user, passwordFile string) (string, string, error) {
	if user == "" {
		if passwordFile != "" {
			return "", "", errors.New("-join-password-file needs -join-user")
		}
		return "", "", nil
	}
	if passwordFile == "" {
		return "", "", errors.New("-join-user needs -join-password-file")
	}
	b, err := os.ReadFile(passwordFile)
	if err != nil {
		return "", "", fmt.Errorf("-join-password-file: %w", err)
	}
	return user, strings.TrimRight(string(b), "\r\n"), nil
}
