package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// Leases, with etcdctl's command names:
//
//	kvdbctl lease grant 30                 # prints the lease id (hex)
//	kvdbctl put svc/a addr --lease ID
//	kvdbctl lease keep-alive ID [--once]
//	kvdbctl lease timetolive ID [--keys]
//	kvdbctl lease revoke ID
//	kvdbctl lease list

func newLeaseCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lease",
		Short: "Grant, keep alive, inspect and revoke leases",
		Long: `A lease expires unless kept alive within its TTL; every key put with
--lease ID is deleted when its lease is revoked or expires. Ids are printed
and read in hexadecimal, as etcdctl does.`,
	}
	cmd.AddCommand(newLeaseGrantCmd(a), newLeaseRevokeCmd(a), newLeaseKeepAliveCmd(a), newLeaseTimeToLiveCmd(a), newLeaseListCmd(a))
	return cmd
}

func leaseRPC[T any](ctx context.Context, a *app, rpc func(context.Context, kvdbv1.LeaseServiceClient) (T, error)) (T, error) {
	return invoke(ctx, a, func(ctx context.Context, c *client) (T, error) {
		return rpc(ctx, kvdbv1.NewLeaseServiceClient(c.conn))
	})
}

// leaderLeaseRPC is leaseRPC on the leader, the only node that renews
// leases and knows how long they have left, found through the node
// kvdbctl reached (onLeader).
func leaderLeaseRPC[T any](ctx context.Context, a *app, rpc func(context.Context, kvdbv1.LeaseServiceClient) (T, error)) (T, error) {
	var out T
	err := a.onLeader(ctx, func(ctx context.Context, c *client) error {
		r, err := rpc(ctx, kvdbv1.NewLeaseServiceClient(c.conn))
		if err != nil {
			return c.check(err)
		}
		out = r
		return nil
	})
	return out, err
}

// parseLeaseID reads a lease id in hexadecimal (etcdctl's spelling).
func parseLeaseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 16, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("invalid lease id %q: want the hexadecimal id lease grant printed", s)
	}
	return id, nil
}

func formatLeaseID(id int64) string { return strconv.FormatInt(id, 16) }

func newLeaseGrantCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "grant TTL",
		Short: "Create a lease of TTL seconds and print its id",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ttl, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || ttl <= 0 {
				return fmt.Errorf("invalid TTL %q: want a positive number of seconds", args[0])
			}
			r, err := leaseRPC(cmd.Context(), a, func(ctx context.Context, l kvdbv1.LeaseServiceClient) (*kvdbv1.LeaseGrantResponse, error) {
				return l.LeaseGrant(ctx, &kvdbv1.LeaseGrantRequest{Ttl: ttl})
			})
			if err != nil {
				return err
			}
			if a.output == outputJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"id": formatLeaseID(r.GetId()), "ttl": r.GetTtl()})
			}
			return writeText(cmd.OutOrStdout(), "lease %s granted with TTL(%ds)\n", formatLeaseID(r.GetId()), r.GetTtl())
		},
	}
}

func newLeaseRevokeCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a lease, deleting every key attached to it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseLeaseID(args[0])
			if err != nil {
				return err
			}
			if _, err := leaseRPC(cmd.Context(), a, func(ctx context.Context, l kvdbv1.LeaseServiceClient) (*kvdbv1.LeaseRevokeResponse, error) {
				return l.LeaseRevoke(ctx, &kvdbv1.LeaseRevokeRequest{Id: id})
			}); err != nil {
				return err
			}
			return a.done(cmd.OutOrStdout(), fmt.Sprintf("lease %s revoked", args[0]))
		},
	}
}

func newLeaseKeepAliveCmd(a *app) *cobra.Command {
	var once bool
	cmd := &cobra.Command{
		Use:   "keep-alive ID [--once]",
		Short: "Keep a lease alive until interrupted (or renew it once)",
		Long: `Renew the lease to its full TTL, then again every third of it, printing
each renewal, until interrupted or the lease is gone. The leader renews:
kvdbctl finds it through the node at --address (or among --endpoints), as
member commands do; so does timetolive.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseLeaseID(args[0])
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			for {
				ttl, err := a.keepAliveOnce(ctx, id)
				if ctx.Err() != nil {
					return nil
				}
				if err != nil {
					return err
				}
				if ttl <= 0 {
					return fmt.Errorf("lease %s expired or revoked", args[0])
				}
				if err := writeText(cmd.OutOrStdout(), "lease %s keepalived with TTL(%d)\n", args[0], ttl); err != nil {
					return err
				}
				if once {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Duration(ttl) * time.Second / 3):
				}
			}
		},
	}
	cmd.Flags().BoolVar(&once, "once", false, "renew once and exit")
	return cmd
}

// keepAliveOnce renews a lease over one LeaseKeepAlive exchange.
func (a *app) keepAliveOnce(ctx context.Context, id int64) (int64, error) {
	return leaderLeaseRPC(ctx, a, func(ctx context.Context, l kvdbv1.LeaseServiceClient) (int64, error) {
		s, err := l.LeaseKeepAlive(ctx)
		if err != nil {
			return 0, err
		}
		if err := s.Send(&kvdbv1.LeaseKeepAliveRequest{Id: id}); err != nil {
			return 0, err
		}
		r, err := s.Recv()
		if err != nil {
			return 0, err
		}
		if err := s.CloseSend(); err != nil {
			return 0, err
		}
		if _, err := s.Recv(); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		return r.GetTtl(), nil
	})
}

func newLeaseTimeToLiveCmd(a *app) *cobra.Command {
	var keys bool
	cmd := &cobra.Command{
		Use:   "timetolive ID [--keys]",
		Short: "Show a lease's remaining and granted TTL (and its keys)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseLeaseID(args[0])
			if err != nil {
				return err
			}
			r, err := leaderLeaseRPC(cmd.Context(), a, func(ctx context.Context, l kvdbv1.LeaseServiceClient) (*kvdbv1.LeaseTimeToLiveResponse, error) {
				return l.LeaseTimeToLive(ctx, &kvdbv1.LeaseTimeToLiveRequest{Id: id, Keys: keys})
			})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if a.output == outputJSON {
				ks := make([]string, len(r.GetKeys()))
				for i, k := range r.GetKeys() {
					ks[i] = string(k)
				}
				return writeJSON(w, map[string]any{"id": args[0], "ttl": r.GetTtl(), "granted_ttl": r.GetGrantedTtl(), "keys": ks})
			}
			if r.GetTtl() < 0 {
				return writeText(w, "lease %s already expired\n", args[0])
			}
			if !keys {
				return writeText(w, "lease %s granted with TTL(%ds), remaining(%ds)\n", args[0], r.GetGrantedTtl(), r.GetTtl())
			}
			ks := ""
			for i, k := range r.GetKeys() {
				if i > 0 {
					ks += ", "
				}
				ks += string(k)
			}
			return writeText(w, "lease %s granted with TTL(%ds), remaining(%ds), attached keys([%s])\n", args[0], r.GetGrantedTtl(), r.GetTtl(), ks)
		},
	}
	cmd.Flags().BoolVar(&keys, "keys", false, "also list the keys attached to the lease")
	return cmd
}

func newLeaseListCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List every lease",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := leaseRPC(cmd.Context(), a, func(ctx context.Context, l kvdbv1.LeaseServiceClient) (*kvdbv1.LeaseLeasesResponse, error) {
				return l.LeaseLeases(ctx, &kvdbv1.LeaseLeasesRequest{})
			})
			if err != nil {
				return err
			}
			ids := make([]string, len(r.GetLeases()))
			for i, l := range r.GetLeases() {
				ids[i] = formatLeaseID(l.GetId())
			}
			if a.output == outputJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"leases": ids})
			}
			if err := writeText(cmd.OutOrStdout(), "found %d leases\n", len(ids)); err != nil {
				return err
			}
			for _, id := range ids {
				if err := writeText(cmd.OutOrStdout(), "%s\n", id); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// ttl prints a key's remaining time to live, as Redis's TTL: -2 when the
// key does not exist, -1 when it has no TTL, else seconds (rounded).
func (a *app) ttl(ctx context.Context, w io.Writer, key string) error {
	cons, err := parseConsistency(a.consistencyFlag)
	if err != nil {
		return err
	}
	r, err := invoke(ctx, a, func(ctx context.Context, c *client) (*kvdbv1.GetResponse, error) {
		// gRPC carries the deadline whatever --protocol says.
		return kvdbv1.NewKVServiceClient(c.conn).Get(ctx, &kvdbv1.GetRequest{Key: []byte(key), Consistency: cons})
	})
	switch {
	case status.Code(err) == codes.NotFound:
		return writeText(w, "(integer) -2\n")
	case err != nil:
		return err
	case r.GetKv().GetDeadlineMs() == 0:
		return writeText(w, "(integer) -1\n")
	}
	left := max(r.GetKv().GetDeadlineMs()-time.Now().UnixMilli(), 0)
	return writeText(w, "(integer) %d\n", (left+500)/1000)
}
