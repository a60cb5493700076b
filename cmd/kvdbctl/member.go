package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	kvclient "github.com/kvdb/kvdb/client"
	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// membershipTimeout bounds a membership change or leader transfer, which
// wait for raft to commit and apply.
const membershipTimeout = 15 * time.Second

func newMemberCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "member",
		Short: "List, add or remove cluster members",
		Long: `Membership changes go to the leader; kvdbctl finds it through the node at
--address. A change that would leave the cluster without a quorum of active
members is refused.

  kvdbctl member list
  kvdbctl member add node4 node4:8080     # then start node4 with -join=<any member>
  kvdbctl member remove node4`,
	}
	var peerAddr string
	add := &cobra.Command{
		Use:   "add NAME ADDRESS",
		Short: "Add a member (NAME is its -node-id, ADDRESS its host:port; --peer-address its -peer-address)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.onLeader(cmd.Context(), func(ctx context.Context, c *client) error {
				resp, err := c.admin.MemberAdd(ctx, &kvdbv1.MemberAddRequest{Name: args[0], Address: args[1], PeerAddress: peerAddr})
				if err != nil {
					return c.check(err)
				}
				return a.printMembers(cmd.OutOrStdout(), fmt.Sprintf("added %s (%x)", args[0], resp.GetMember().GetId()), resp.GetMembers())
			})
		},
	}
	add.Flags().StringVar(&peerAddr, "peer-address", "", "host:port where the new member serves raft traffic, when it has a -peer-address")
	cmd.AddCommand(
		&cobra.Command{
			Use:   "list",
			Short: "List the members",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return a.memberList(cmd.Context(), cmd.OutOrStdout())
			},
		},
		add,
		&cobra.Command{
			Use:   "remove NAME",
			Short: "Remove a member",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return a.onLeader(cmd.Context(), func(ctx context.Context, c *client) error {
					resp, err := c.admin.MemberRemove(ctx, &kvdbv1.MemberRemoveRequest{Name: args[0]})
					if err != nil {
						return c.check(err)
					}
					return a.printMembers(cmd.OutOrStdout(), "removed "+args[0], resp.GetMembers())
				})
			},
		},
	)
	return cmd
}

func newLeaderCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "leader",
		Short: "Leadership commands",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "transfer NAME",
		Short: "Hand leadership to member NAME and wait until it leads",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.onLeader(cmd.Context(), func(ctx context.Context, c *client) error {
				resp, err := c.admin.TransferLeader(ctx, &kvdbv1.TransferLeaderRequest{Name: args[0]})
				if err != nil {
					return c.check(err)
				}
				if a.output == outputJSON {
					return writeJSON(cmd.OutOrStdout(), map[string]string{"leader": resp.GetLeader()})
				}
				return writeText(cmd.OutOrStdout(), "leader is now %s\n", resp.GetLeader())
			})
		},
	})
	return cmd
}

type memberJSON struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Address  string `json:"address"`
	IsLeader bool   `json:"is_leader"`
	Learner  bool   `json:"is_learner"`
}

func (a *app) memberList(ctx context.Context, w io.Writer) error {
	resp, err := invoke(ctx, a, func(ctx context.Context, c *client) (*kvdbv1.MemberListResponse, error) {
		return c.admin.MemberList(ctx, &kvdbv1.MemberListRequest{})
	})
	if err != nil {
		return fmt.Errorf("member list: %w", err)
	}
	return a.printMembers(w, "", resp.GetMembers())
}

func (a *app) printMembers(w io.Writer, headline string, ms []*kvdbv1.Member) error {
	if a.output == outputJSON {
		out := make([]memberJSON, 0, len(ms))
		for _, m := range ms {
			out = append(out, memberJSON{ID: fmt.Sprintf("%x", m.GetId()), Name: m.GetName(), Address: m.GetAddress(), IsLeader: m.GetIsLeader(), Learner: m.GetIsLearner()})
		}
		return writeJSON(w, map[string]any{"members": out})
	}
	if headline != "" {
		if err := writeText(w, "%s\n", headline); err != nil {
			return err
		}
	}
	for _, m := range ms {
		role := "follower"
		if m.GetIsLeader() {
			role = "leader"
		}
		if m.GetIsLearner() {
			role = "learner"
		}
		if err := writeText(w, "%x  %-12s %-24s %s\n", m.GetId(), m.GetName(), m.GetAddress(), role); err != nil {
			return err
		}
	}
	return nil
}

// onLeader runs f against the leader, found through the node at --address.
func (a *app) onLeader(ctx context.Context, f func(context.Context, *client) error) error {
	ctx, cancel := context.WithTimeout(ctx, max(a.timeout, membershipTimeout))
	defer cancel()
	c, err := a.client()
	if err != nil {
		return err
	}
	list, err := c.admin.MemberList(ctx, &kvdbv1.MemberListRequest{})
	if err != nil {
		return c.check(err)
	}
	leader := ""
	for _, m := range list.GetMembers() {
		if m.GetIsLeader() {
			leader = m.GetAddress()
		}
	}
	if leader == "" {
		return errors.New("the cluster has no leader right now; try again")
	}
	if leader == a.address || leader == dialTarget(a.address) {
		return f(ctx, c)
	}
	lc, err := dial(leader, kvclient.ProtocolGRPC, a.tls, a.user, a.password)
	if err != nil {
		return err
	}
	defer lc.close()
	err = f(ctx, lc)
	var unreachable *unreachableError
	if errors.As(err, &unreachable) {
		// The leader's advertised address may not resolve from here (a
		// container name seen from the host): fall back to the node we
		// reached, which names the leader in its error if it is not it.
		return f(ctx, c)
	}
	return err
}
