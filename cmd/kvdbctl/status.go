package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

func newStatusCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Print the node's raft and store status",
		Long: `Print one line of key=value pairs describing the node, e.g.

  node_id=node1 leader=node1 is_leader=true term=2 applied_index=10 commit_index=10 state=leader

With -o json prints every field of the status, including member_id and the
store revision.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.status(cmd.Context(), cmd.OutOrStdout())
		},
	}
}

// statusJSON is the -o json answer of status.
type statusJSON struct {
	NodeID         string `json:"node_id"`
	IsLeader       bool   `json:"is_leader"`
	LeaderID       string `json:"leader_id"`
	LeaderMemberID uint64 `json:"leader_member_id"`
	Term           uint64 `json:"term"`
	AppliedIndex   uint64 `json:"applied_index"`
	CommitIndex    uint64 `json:"commit_index"`
	RaftState      string `json:"raft_state"`
	ClusterID      uint64 `json:"cluster_id"`
	MemberID       uint64 `json:"member_id"`
	Revision       int64  `json:"revision"`
	Keys           int64  `json:"keys"`
	MemoryUsage    int64  `json:"memory_usage"`
	Version        string `json:"version"`
	DataDir        string `json:"data_dir"`
	ClientAddress  string `json:"client_address,omitempty"`
}

// status fetches and prints the node status; shared with the REPL.
func (a *app) status(ctx context.Context, w io.Writer) error {
	resp, err := invoke(ctx, a, func(ctx context.Context, c *client) (*kvdbv1.StatusResponse, error) {
		return c.admin.Status(ctx, &kvdbv1.StatusRequest{})
	})
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if a.output == outputJSON {
		return writeJSON(w, statusJSON{
			NodeID:         resp.GetNodeId(),
			IsLeader:       resp.GetIsLeader(),
			LeaderID:       resp.GetLeaderId(),
			LeaderMemberID: resp.GetLeaderMemberId(),
			Term:           resp.GetTerm(),
			AppliedIndex:   resp.GetAppliedIndex(),
			CommitIndex:    resp.GetCommitIndex(),
			RaftState:      resp.GetRaftState(),
			ClusterID:      resp.GetHeader().GetClusterId(),
			MemberID:       resp.GetHeader().GetMemberId(),
			Revision:       resp.GetHeader().GetRevision(),
			Keys:           resp.GetKeys(),
			MemoryUsage:    resp.GetMemoryUsage(),
			Version:        resp.GetVersion(),
			DataDir:        resp.GetDataDir(),
			ClientAddress:  resp.GetClientAddress(),
		})
	}
	return writeText(w, "node_id=%s leader=%s is_leader=%t term=%d applied_index=%d commit_index=%d state=%s\n",
		resp.GetNodeId(), resp.GetLeaderId(), resp.GetIsLeader(), resp.GetTerm(),
		resp.GetAppliedIndex(), resp.GetCommitIndex(), resp.GetRaftState())
}
