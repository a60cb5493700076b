package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
)

// TestNewcomerFlow is the README's flow with the real binaries: put and get
// from kvdbctl, the piped REPL, status and stats as JSON, a graceful stop and
// a restart that still has the data.
func TestNewcomerFlow(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	p := startServer(t, addr, dir)

	if out, errOut, code := ctl(t, addr, "", "put", "user:1", `{"name":"John","age":30}`); code != 0 || strings.TrimSpace(out) != "OK" {
		t.Fatalf("put: code %d out %q err %q", code, out, errOut)
	}
	if out, _, code := ctl(t, addr, "", "get", "user:1"); code != 0 || out != "{\"name\":\"John\",\"age\":30}\n" {
		t.Fatalf("get: code %d out %q", code, out)
	}
	if out, errOut, code := ctl(t, addr, "", "get", "missing"); code != 1 || out != "" || !strings.Contains(errOut, "key not found") {
		t.Fatalf("get missing: code %d out %q err %q", code, out, errOut)
	}
	// The single-dash form the README documents.
	if out, _, code := ctl(t, addr, "", "-address", addr, "get", "user:1"); code != 0 || !strings.Contains(out, "John") {
		t.Fatalf("single-dash address: code %d out %q", code, out)
	}
	script := "PUT greeting hello world\nget greeting\nBATCH PUT k1 v1 PUT k2 v2 DELETE k3\nGET k2\nDELETE greeting\nGET greeting\nQUIT\n"
	out, errOut, code := ctl(t, addr, script)
	if code != 0 {
		t.Fatalf("repl: code %d out %q err %q", code, out, errOut)
	}
	for _, want := range []string{"OK", "hello world", "v2", "(nil)"} {
		if !strings.Contains(out, want) {
			t.Fatalf("repl output %q lacks %q", out, want)
		}
	}

	out, _, code = ctl(t, addr, "", "status", "-o", "json")
	if code != 0 {
		t.Fatalf("status: %d", code)
	}
	var st struct {
		NodeID       string `json:"node_id"`
		IsLeader     bool   `json:"is_leader"`
		LeaderID     string `json:"leader_id"`
		Term         uint64 `json:"term"`
		AppliedIndex uint64 `json:"applied_index"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status json %q: %v", out, err)
	}
	if st.NodeID != "node1" || !st.IsLeader || st.LeaderID != "node1" || st.Term == 0 || st.AppliedIndex == 0 {
		t.Fatalf("status = %+v", st)
	}

	out, _, code = ctl(t, addr, "", "stats")
	if code != 0 {
		t.Fatalf("stats: %d", code)
	}
	var stats struct {
		Storage struct {
			Keys      int64 `json:"keys"`
			MaxMemory int64 `json:"max_memory"`
		} `json:"storage"`
		Raft struct {
			NodeID string `json:"node_id"`
			State  int    `json:"state"`
		} `json:"raft"`
		Metrics struct {
			Operations map[string]struct {
				Count int64 `json:"count"`
			} `json:"operations"`
		} `json:"metrics"`
	}
	if err := json.Unmarshal([]byte(out), &stats); err != nil {
		t.Fatalf("stats json %q: %v", out, err)
	}
	if stats.Storage.Keys != 3 || stats.Storage.MaxMemory != 1<<30 || stats.Raft.State != 2 || stats.Raft.NodeID != "node1" ||
		stats.Metrics.Operations["PUT"].Count != 2 {
		t.Fatalf("stats = %+v", stats)
	}

	checkReflectionAndHealth(t, addr)

	if err := p.terminate(t); err != nil {
		t.Fatalf("SIGTERM exit: %v\n%s", err, p.logs())
	}
	if !strings.Contains(p.logs(), "stopped cleanly") {
		t.Fatalf("no clean stop line in logs:\n%s", p.logs())
	}
	startServer(t, addr, dir)
	if out, _, code := ctl(t, addr, "", "get", "k1"); code != 0 || out != "v1\n" {
		t.Fatalf("after restart: code %d out %q", code, out)
	}
}

// checkReflectionAndHealth lists services through server reflection (what
// `grpcurl -plaintext ADDR list` does) and checks the health service.
func checkReflectionAndHealth(t *testing.T, addr string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"kvdb.v1.KVService", "kvdb.v1.AdminService", "grpc.health.v1.Health"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Fatalf("reflection lists %v, missing %s", names, want)
		}
	}
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", h, err)
	}
}

// TestBadFlagsFailClearly checks start-up errors name what is wrong.
func TestBadFlagsFailClearly(t *testing.T) {
	server, _ := binaries(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-max-memory=lots"}, "max-memory"},
		{[]string{"-peers=node2:8080"}, "-enable-raft"},
		{[]string{"-log-format=xml"}, "log-format"},
	} {
		out, err := runCombined(server, tc.args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("kvdb-server %v: err %v, output %q does not mention %q", tc.args, err, out, tc.want)
		}
	}
}
