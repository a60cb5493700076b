package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func newHealthCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "health",
		Short: "Exit 0 when the node is serving (knows a leader, has applied what is committed)",
		Long: `Asks the node's standard gRPC health service. Prints SERVING and exits 0
when the node can serve requests; prints the status and exits 1 otherwise.
Used by the Docker healthcheck.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := invoke(cmd.Context(), a, func(ctx context.Context, c *client) (*healthpb.HealthCheckResponse, error) {
				return healthpb.NewHealthClient(c.conn).Check(ctx, &healthpb.HealthCheckRequest{})
			})
			if err != nil {
				return fmt.Errorf("health: %w", err)
			}
			if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				return fmt.Errorf("node is %s", resp.GetStatus())
			}
			return writeText(cmd.OutOrStdout(), "%s\n", resp.GetStatus())
		},
	}
}
