package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
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
--address (or the leader among --endpoints), dialling the client address
the leader announced (-advertise-client-address) or its address.
member list shows, from the leader, whether each member is reachable and
how long ago the leader last heard from it. A change that would leave the cluster without a quorum of active
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
	ID            string `json:"id"`
	Name          string `json:"name"`
	Address       string `json:"address"`
	ClientAddress string `json:"client_address,omitempty"`
	IsLeader      bool   `json:"is_leader"`
	Learner       bool   `json:"is_learner"`
	// Reachable and LastContactMs are the leader's view; absent when no
	// leader answered.
	Reachable     *bool  `json:"reachable,omitempty"`
	LastContactMs *int64 `json:"last_contact_ms,omitempty"`
}

// memberList prints the members as the leader sees them (with each one's
// reachability), or as the reached node sees them when the leader cannot
// be asked.
func (a *app) memberList(ctx context.Context, w io.Writer) error {
	resp, err := invoke(ctx, a, func(ctx context.Context, c *client) (*kvdbv1.MemberListResponse, error) {
		return c.admin.MemberList(ctx, &kvdbv1.MemberListRequest{})
	})
	if err != nil {
		return fmt.Errorf("member list: %w", err)
	}
	if leader := leaderOf(resp.GetMembers()); leader != nil && leader.GetId() != resp.GetHeader().GetMemberId() {
		for _, addr := range leaderAddresses(leader) {
			lc, err := dial(addr, kvclient.ProtocolGRPC, a.tls, a.user, a.password)
			if err != nil {
				continue
			}
			lresp, err := invoke(ctx, a, func(ctx context.Context, _ *client) (*kvdbv1.MemberListResponse, error) {
				return lc.admin.MemberList(ctx, &kvdbv1.MemberListRequest{})
			})
			_ = lc.close()
			if err == nil {
				resp = lresp
				break
			}
		}
	}
	return a.printMembers(w, "", resp.GetMembers())
}

func (a *app) printMembers(w io.Writer, headline string, ms []*kvdbv1.Member) error {
	if a.output == outputJSON {
		out := make([]memberJSON, 0, len(ms))
		for _, m := range ms {
			out = append(out, memberJSON{ID: fmt.Sprintf("%x", m.GetId()), Name: m.GetName(), Address: m.GetAddress(),
				ClientAddress: m.GetClientAddress(), IsLeader: m.GetIsLeader(), Learner: m.GetIsLearner(),
				Reachable: m.Reachable, LastContactMs: m.LastContactMs})
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
		line := fmt.Sprintf("%x  %-12s %-24s %-8s", m.GetId(), m.GetName(), m.GetAddress(), role)
		if c := m.GetClientAddress(); c != "" && c != m.GetAddress() {
			line += " client=" + c
		}
		line += reachability(m)
		if err := writeText(w, "%s\n", strings.TrimRight(line, " ")); err != nil {
			return err
		}
	}
	return nil
}

// reachability renders the leader's view of a member: "" when unknown.
func reachability(m *kvdbv1.Member) string {
	if m.Reachable == nil {
		return ""
	}
	s := " reachable"
	if !m.GetReachable() {
		s = " UNREACHABLE"
	}
	if m.LastContactMs != nil {
		age := time.Duration(m.GetLastContactMs()) * time.Millisecond
		if age >= time.Second {
			age = age.Round(100 * time.Millisecond)
		}
		s += fmt.Sprintf(" (last contact %s ago)", age)
	} else if !m.GetReachable() {
		s += " (not heard from since the leader started)"
	}
	return s
}

// leaderOf returns the member marked leader, or nil.
func leaderOf(ms []*kvdbv1.Member) *kvdbv1.Member {
	for _, m := range ms {
		if m.GetIsLeader() {
			return m
		}
	}
	return nil
}

// leaderAddresses are the addresses to try for the leader: the client
// address it announced (reachable from outside a Docker network, say),
// then its address in the membership (-advertise-address).
func leaderAddresses(m *kvdbv1.Member) []string {
	var out []string
	for _, addr := range []string{m.GetClientAddress(), m.GetAddress()} {
		if addr != "" && !slices.Contains(out, addr) {
			out = append(out, addr)
		}
	}
	return out
}

// onLeader runs f against the leader, found through the node kvdbctl
// reached: directly when that node leads, else at the leader's client
// address, then at its address in the membership. When neither answers, f
// runs on the reached node, whose error names the leader.
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
	leader := leaderOf(list.GetMembers())
	if leader == nil {
		return errors.New("the cluster has no leader right now; try again")
	}
	if leader.GetId() == list.GetHeader().GetMemberId() {
		return f(ctx, c)
	}
	for _, addr := range leaderAddresses(leader) {
		lc, err := dial(addr, kvclient.ProtocolGRPC, a.tls, a.user, a.password)
		if err != nil {
			continue
		}
		err = f(ctx, lc)
		_ = lc.close()
		var unreachable *unreachableError
		if !errors.As(err, &unreachable) {
			return err
		}
	}
	return f(ctx, c)
}
