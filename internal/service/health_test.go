package service

import (
	"context"
	"net/http"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// waitHealth polls node i's gRPC health until it reports want, bounded.
func waitHealth(t *testing.T, c *testCluster, i int, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	hc := healthpb.NewHealthClient(c.nodes[i].conn)
	deadline := time.Now().Add(15 * time.Second)
	var got healthpb.HealthCheckResponse_ServingStatus
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil {
			if got = resp.GetStatus(); got == want {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: health %v, want %v within 15s", c.names[i], got, want)
}

func readyzCode(t *testing.T, addr string) int {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestHealthFollowsPartition: a node cut off from its peers reports
// NOT_SERVING (gRPC health, /readyz, kvdb_server_has_leader) and SERVING
// again once the network heals, whether it led or followed.
func TestHealthFollowsPartition(t *testing.T) {
	for _, tc := range []struct {
		name   string
		leader bool
	}{{"leader", true}, {"follower", false}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 3, func(cfg *Config) { cfg.EnableMetrics = true })
			lead := c.waitLeader()
			i := lead
			if !tc.leader {
				i = (lead + 1) % 3
			}
			for j := range c.nodes {
				waitHealth(t, c, j, healthpb.HealthCheckResponse_SERVING)
			}
			n := c.nodes[i]
			if code := readyzCode(t, n.addr); code != http.StatusOK {
				t.Fatalf("/readyz before the cut = %d", code)
			}

			c.net.Isolate(c.ids[i])
			waitHealth(t, c, i, healthpb.HealthCheckResponse_NOT_SERVING)
			if code := readyzCode(t, n.addr); code != http.StatusServiceUnavailable {
				t.Fatalf("/readyz while cut off = %d, want 503", code)
			}
			if v := metricValue(t, n.srv.metrics.reg, "kvdb_server_has_leader", nil); v != 0 {
				t.Fatalf("kvdb_server_has_leader while cut off = %v", v)
			}
			// The majority side keeps (or elects) a leader and serves.
			other := (i + 1) % 3
			waitHealth(t, c, other, healthpb.HealthCheckResponse_SERVING)

			c.net.Heal()
			waitHealth(t, c, i, healthpb.HealthCheckResponse_SERVING)
			if code := readyzCode(t, n.addr); code != http.StatusOK {
				t.Fatalf("/readyz after healing = %d", code)
			}
		})
	}
}

// TestRestartedFollowerOfIdleClusterServes: a follower restarted while the
// cluster takes no writes becomes ready once it hears from the leader; it
// stayed NOT_SERVING ("no log received yet") until the next write, as its
// commit index read 0 until then.
func TestRestartedFollowerOfIdleClusterServes(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.waitLeader()
	if err := c.put(lead, "k", "v"); err != nil {
		t.Fatal(err)
	}
	f := (lead + 1) % 3
	c.waitConverged()
	c.stop(f)
	c.start(f)
	waitHealth(t, c, f, healthpb.HealthCheckResponse_SERVING)
	if ok, why := c.nodes[f].srv.ready(); !ok {
		t.Fatalf("restarted follower not ready: %s", why)
	}
}
