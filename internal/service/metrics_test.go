package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/encoding/protojson"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/raftnode"
	"github.com/kvdb/kvdb/internal/wire"
)

// metricValue sums the samples of one metric family whose labels include
// want: a counter's or gauge's value, a histogram's sample count. It
// returns -1 when no sample matches.
func metricValue(t testing.TB, reg prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	total, found := 0.0, false
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	sample:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue sample
				}
			}
			found = true
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				total += m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				total += m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				total += float64(m.GetHistogram().GetSampleCount())
			default:
				t.Fatalf("%s: unexpected type %v", name, f.GetType())
			}
		}
	}
	if !found {
		return -1
	}
	return total
}

type metricRef struct {
	name   string
	labels map[string]string
}

func (r metricRef) String() string { return fmt.Sprintf("%s%v", r.name, r.labels) }

// TestMetricsMoveWithEvents: each instrument moves when its event happens.
func TestMetricsMoveWithEvents(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) {
		c.EnableMetrics = true
		c.MaxMemory = 1 << 20
		c.Raft.SyncWrites = true // every write fsyncs: the fsync histogram moves deterministically
		c.Raft.SnapshotCount = 8
		c.Raft.SnapshotCatchUpEntries = 2
	})
	reg := n.srv.metrics.reg
	ctx := ctxT(t)
	put := func(k string) {
		t.Helper()
		if _, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte(k), Value: []byte("value")}); err != nil {
			t.Fatal(err)
		}
	}
	raw := dialRaw(t, n.addr)
	txn := txnClient(n)

	// State at start: a single voter leads.
	for _, m := range []metricRef{
		{"kvdb_server_is_leader", nil}, {"kvdb_server_has_leader", nil}, {"kvdb_server_leader_changes_seen_total", nil},
		{"kvdb_server_ready", nil}, {"kvdb_build_info", nil},
	} {
		if v := metricValue(t, reg, m.name, m.labels); v != 1 {
			t.Errorf("%v = %v at start, want 1", m, v)
		}
	}
	if v := metricValue(t, reg, "kvdb_store_memory_limit_bytes", nil); v != 1<<20 {
		t.Errorf("memory limit = %v", v)
	}

	grpcPut := map[string]string{"grpc_service": "kvdb.v1.KVService", "grpc_method": "Put"}
	cases := []struct {
		name  string
		do    func(t *testing.T)
		moves []metricRef // each must increase
		// eventually: some instruments move off the request path
		// (snapshots); they are polled, bounded.
		eventually []metricRef
	}{
		{
			name: "gRPC put",
			do:   func(t *testing.T) { put("a") },
			moves: []metricRef{
				{"kvdb_server_proposals_committed_total", nil},
				{"kvdb_server_proposals_applied_total", nil},
				{"kvdb_server_apply_duration_seconds", nil},
				{"kvdb_wal_written_bytes_total", nil},
				{"kvdb_wal_fsync_duration_seconds", nil},
				{"kvdb_store_keys", nil},
				{"kvdb_store_memory_used_bytes", nil},
				{"kvdb_store_revision", nil},
				{"kvdb_operation_duration_seconds", map[string]string{"protocol": "grpc", "operation": "PUT"}},
				{"grpc_server_started_total", grpcPut},
				{"grpc_server_handled_total", map[string]string{"grpc_method": "Put", "grpc_code": "OK"}},
				{"grpc_server_handling_seconds", grpcPut},
			},
		},
		{
			name: "gRPC get",
			do: func(t *testing.T) {
				if _, err := n.kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte("a")}); err != nil {
					t.Fatal(err)
				}
			},
			moves: []metricRef{
				{"kvdb_operation_duration_seconds", map[string]string{"protocol": "grpc", "operation": "GET"}},
				{"grpc_server_handled_total", map[string]string{"grpc_method": "Get", "grpc_code": "OK"}},
			},
		},
		{
			name: "gRPC get of a missing key",
			do: func(t *testing.T) {
				if _, err := n.kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte("missing")}); Code(err).String() != "NotFound" {
					t.Fatal(err)
				}
			},
			moves: []metricRef{{"grpc_server_handled_total", map[string]string{"grpc_method": "Get", "grpc_code": "NotFound"}}},
		},
		{
			name: "binary put and get",
			do: func(t *testing.T) {
				raw.call(&wire.Request{Op: wire.OpPut, ID: 1, Key: []byte("b"), Value: []byte("v")})
				raw.call(&wire.Request{Op: wire.OpGet, ID: 2, Key: []byte("b")})
			},
			moves: []metricRef{
				{"kvdb_binary_requests_total", map[string]string{"opcode": "PUT"}},
				{"kvdb_binary_requests_total", map[string]string{"opcode": "GET"}},
				{"kvdb_operation_duration_seconds", map[string]string{"protocol": "binary", "operation": "PUT"}},
				{"kvdb_operation_duration_seconds", map[string]string{"protocol": "binary", "operation": "GET"}},
				{"kvdb_store_keys", nil},
			},
		},
		{
			name: "binary connection opens",
			do:   func(t *testing.T) { dialRaw(t, n.addr).call(&wire.Request{Op: wire.OpPing, ID: 1}) },
			moves: []metricRef{
				{"kvdb_binary_connections", nil},
				{"kvdb_client_connections", nil},
				{"kvdb_binary_requests_total", map[string]string{"opcode": "PING"}},
			},
		},
		{
			name: "transaction commits",
			do: func(t *testing.T) {
				id := begin(t, txn, "")
				txnPut(t, txn, id, "t", "1")
				if err := commit(txn, id); err != nil {
					t.Fatal(err)
				}
			},
			moves: []metricRef{{"kvdb_txn_commits_total", nil}},
		},
		{
			name: "transaction aborts on a conflict",
			do: func(t *testing.T) {
				id := begin(t, txn, "")
				txnGet(t, txn, id, "t")
				txnPut(t, txn, id, "u", "1")
				put("t")
				if err := commit(txn, id); Code(err).String() != "Aborted" {
					t.Fatalf("commit = %v, want Aborted", err)
				}
			},
			moves: []metricRef{{"kvdb_txn_aborts_total", nil}},
		},
		{
			name:  "transaction opens",
			do:    func(t *testing.T) { begin(t, txn, "") },
			moves: []metricRef{{"kvdb_txn_active", nil}},
		},
		{
			name: "enough writes for a snapshot",
			do: func(t *testing.T) {
				for i := 0; i < 10; i++ {
					put(fmt.Sprint("s", i))
				}
			},
			eventually: []metricRef{
				{"kvdb_snapshot_save_duration_seconds", nil},
				{"kvdb_snapshot_size_bytes", nil},
				{"kvdb_snapshot_last_index", nil},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			all := append(append([]metricRef(nil), tc.moves...), tc.eventually...)
			before := make([]float64, len(all))
			for i, m := range all {
				before[i] = metricValue(t, reg, m.name, m.labels)
			}
			tc.do(t)
			for i, m := range tc.moves {
				if after := metricValue(t, reg, m.name, m.labels); after <= before[i] {
					t.Errorf("%v did not move: %v -> %v", m, before[i], after)
				}
			}
			for j, m := range tc.eventually {
				i := len(tc.moves) + j
				deadline := time.Now().Add(10 * time.Second)
				after := metricValue(t, reg, m.name, m.labels)
				for after <= before[i] && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
					after = metricValue(t, reg, m.name, m.labels)
				}
				if after <= before[i] {
					t.Errorf("%v did not move within 10s: %v -> %v", m, before[i], after)
				}
			}
		})
	}
}

// TestMetricsProposalFailed: a proposal that cannot complete is counted.
func TestMetricsProposalFailed(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	reg := n.srv.metrics.reg
	srv := n.srv
	before := metricValue(t, reg, "kvdb_server_proposals_failed_total", nil)
	n.stop(t)
	if _, err := srv.Node().Propose(context.Background(), []byte("x")); !errors.Is(err, raftnode.ErrStopped) {
		t.Fatalf("Propose on a stopped node = %v, want ErrStopped", err)
	}
	if after := metricValue(t, reg, "kvdb_server_proposals_failed_total", nil); after != before+1 {
		t.Fatalf("proposals failed %v -> %v, want +1", before, after)
	}
}

// contractStats is the STATS shape docs/monitoring.md defines as the contract.
type contractStats struct {
	Storage struct {
		Keys        int64 `json:"keys"`
		MemoryUsage int64 `json:"memory_usage"`
		MaxMemory   int64 `json:"max_memory"`
		Version     int64 `json:"version"`
		ExpiredKeys int64 `json:"expired_keys"` // added with TTLs
	} `json:"storage"`
	Network struct {
		ActiveConnections int64  `json:"active_connections"`
		TotalRequests     int64  `json:"total_requests"`
		Address           string `json:"address"`
	} `json:"network"`
	Raft struct {
		NodeID      string `json:"node_id"`
		State       int    `json:"state"`
		CurrentTerm int64  `json:"current_term"`
		LeaderID    string `json:"leader_id"`
		LogLength   int64  `json:"log_length"`
		CommitIndex int64  `json:"commit_index"`
	} `json:"raft"`
	Metrics struct {
		UptimeSeconds float64 `json:"uptime_seconds"`
		Operations    map[string]struct {
			Count      int64   `json:"count"`
			OpsPerSec  float64 `json:"ops_per_sec"`
			AvgLatency int64   `json:"avg_latency"`
			P95Latency int64   `json:"p95_latency"`
			P99Latency int64   `json:"p99_latency"`
		} `json:"operations"`
	} `json:"metrics"`
	Transactions json.RawMessage `json:"transactions"` // this project's fifth section
}

// TestStatsContractShapeMatchesMetrics: STATS (as the binary STATS opcode and
// kvdbctl print it) decodes into the contract's shape with no field left over,
// its counts are what the test did, and they equal the /metrics numbers.
func TestStatsContractShapeMatchesMetrics(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) { c.EnableMetrics = true; c.Address = ":8080"; c.MaxMemory = 1 << 30 })
	ctx := ctxT(t)
	for i := 0; i < 4; i++ {
		if _, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte(fmt.Sprint("k", i)), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		if _, err := n.kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte("k1")}); err != nil {
			t.Fatal(err)
		}
	}
	raw := dialRaw(t, n.addr)
	raw.call(&wire.Request{Op: wire.OpGet, ID: 1, Key: []byte("k2")})
	raw.call(&wire.Request{Op: wire.OpDelete, ID: 2, Key: []byte("k3")})
	resp := raw.call(&wire.Request{Op: wire.OpStats, ID: 3})

	var st contractStats
	dec := json.NewDecoder(bytes.NewReader(resp.Payload))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&st); err != nil {
		t.Fatalf("STATS does not decode into the contract's shape: %v\n%s", err, resp.Payload)
	}
	// The Go client reads the same payload with protojson.
	var pb kvdbv1.StatsResponse
	if err := protojson.Unmarshal(resp.Payload, &pb); err != nil || pb.GetStorage().GetKeys() != 3 ||
		pb.GetMetrics().GetOperations()["PUT"].GetCount() != 4 {
		t.Fatalf("protojson decode of STATS: %v, %v", err, &pb)
	}
	ops := st.Metrics.Operations
	if ops["PUT"].Count != 4 || ops["GET"].Count != 3 || ops["DELETE"].Count != 1 || len(ops) != 3 {
		t.Fatalf("operations = %+v", ops)
	}
	if st.Network.TotalRequests != 8 || st.Network.Address != ":8080" || st.Network.ActiveConnections < 2 {
		t.Fatalf("network = %+v", st.Network)
	}
	if st.Storage.Keys != 3 || st.Storage.Version != 5 || st.Storage.MaxMemory != 1<<30 || st.Storage.MemoryUsage <= 0 {
		t.Fatalf("storage = %+v", st.Storage)
	}
	if st.Raft.NodeID != "node1" || st.Raft.LeaderID != "node1" || st.Raft.State != 2 || st.Raft.CurrentTerm < 1 ||
		st.Raft.CommitIndex < 6 || st.Raft.LogLength < st.Raft.CommitIndex {
		t.Fatalf("raft = %+v", st.Raft)
	}
	if st.Metrics.UptimeSeconds <= 0 {
		t.Fatalf("uptime = %v", st.Metrics.UptimeSeconds)
	}
	for name, o := range ops {
		if o.OpsPerSec <= 0 || o.P95Latency > o.P99Latency || o.P99Latency <= 0 {
			t.Errorf("%s = %+v", name, o)
		}
	}

	// The same numbers through /metrics, scraped over HTTP on the node's port.
	body := scrape(t, "http://"+n.addr+"/metrics")
	for _, want := range []string{
		`kvdb_store_keys 3`,
		`kvdb_store_revision 5`,
		`kvdb_store_memory_limit_bytes 1.073741824e+09`,
		fmt.Sprintf(`kvdb_store_memory_used_bytes %d`, st.Storage.MemoryUsage),
		`kvdb_operation_duration_seconds_count{operation="PUT",protocol="grpc"} 4`,
		`kvdb_operation_duration_seconds_count{operation="GET",protocol="grpc"} 2`,
		`kvdb_operation_duration_seconds_count{operation="GET",protocol="binary"} 1`,
		`kvdb_operation_duration_seconds_count{operation="DELETE",protocol="binary"} 1`,
		`kvdb_server_is_leader 1`,
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(body, "\n"+want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.HasPrefix(line, "kvdb_") && !strings.HasPrefix(line, "go_") &&
			!strings.HasPrefix(line, "process_") && !strings.HasPrefix(line, "grpc_server_") &&
			!strings.HasPrefix(line, "promhttp_") {
			t.Errorf("metric without a known prefix: %s", line)
		}
	}
}

func scrape(t testing.TB, url string) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// TestMetricsEndpoints: /metrics on -address and on the metrics listener;
// -enable-metrics=false serves neither.
func TestMetricsEndpoints(t *testing.T) {
	on := startNode(t, t.TempDir(), func(c *Config) { c.EnableMetrics = true })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- on.srv.ServeMetrics(l) }()
	for _, url := range []string{"http://" + on.addr + "/metrics", "http://" + l.Addr().String() + "/metrics"} {
		if body := scrape(t, url); !strings.Contains(body, "kvdb_server_is_leader 1") {
			t.Errorf("%s lacks kvdb_server_is_leader", url)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		scrape(t, "http://"+l.Addr().String()+path)
	}
	on.stop(t)
	if err := <-served; err != nil {
		t.Fatalf("ServeMetrics: %v", err)
	}

	off := startNode(t, t.TempDir(), nil)
	resp, err := http.Get("http://" + off.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/metrics with metrics disabled = %d, want 404", resp.StatusCode)
	}
	if err := off.srv.ServeMetrics(l); !errors.Is(err, errMetricsDisabled) {
		t.Fatalf("ServeMetrics with metrics disabled = %v", err)
	}
}

// TestMetricsDocumented: every kvdb_ metric a node exposes is described in
// docs/monitoring.md.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "monitoring.md"))
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, t.TempDir(), func(c *Config) { c.EnableMetrics = true })
	dialRaw(t, n.addr).call(&wire.Request{Op: wire.OpPing, ID: 1}) // creates the per-opcode samples
	fams, err := n.srv.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, f := range fams {
		name := f.GetName()
		if !strings.HasPrefix(name, "kvdb_") && !strings.HasPrefix(name, "grpc_server_") {
			continue
		}
		seen++
		if !bytes.Contains(doc, []byte("`"+name)) {
			t.Errorf("%s is not in docs/monitoring.md", name)
		}
	}
	if seen < 20 {
		t.Fatalf("only %d kvdb_/grpc_ metric families registered", seen)
	}
}

// TestPprofOnlyOnMetricsListener: -enable-pprof serves /debug/pprof/ on the
// metrics listener and never on the client port; without it, neither has it.
func TestPprofOnlyOnMetricsListener(t *testing.T) {
	for _, enabled := range []bool{true, false} {
		n := startNode(t, t.TempDir(), func(c *Config) { c.EnableMetrics = true; c.EnablePprof = enabled })
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- n.srv.ServeMetrics(l) }()
		status := func(url string) int {
			resp, err := http.Get(url)
			if err != nil {
				t.Fatalf("GET %s: %v", url, err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		want := http.StatusNotFound
		if enabled {
			want = http.StatusOK
		}
		if got := status("http://" + l.Addr().String() + "/debug/pprof/heap?debug=1"); got != want {
			t.Errorf("enable-pprof=%v: metrics listener /debug/pprof/heap = %d, want %d", enabled, got, want)
		}
		if got := status("http://" + n.addr + "/debug/pprof/heap?debug=1"); got != http.StatusNotFound {
			t.Errorf("enable-pprof=%v: client port /debug/pprof/heap = %d, want 404", enabled, got)
		}
		// The metrics listener still serves its own paths beside the profiles.
		if body := scrape(t, "http://"+l.Addr().String()+"/metrics"); !strings.Contains(body, "kvdb_server_is_leader") {
			t.Errorf("enable-pprof=%v: /metrics lacks kvdb_server_is_leader", enabled)
		}
		n.stop(t)
		if err := <-served; err != nil {
			t.Fatalf("ServeMetrics: %v", err)
		}
	}
}
