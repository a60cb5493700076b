package service

import (
	"encoding/json"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// statsDoc is the STATS document the binary protocol returns: the shape
// docs/monitoring.md defines as the STATS contract (snake_case names, numbers as JSON numbers, never the
// strings protojson makes of int64) plus the additive "transactions"
// section. kvdbctl prints the same shape from AdminService.Stats.
type statsDoc struct {
	Storage struct {
		Keys        int64 `json:"keys"`
		MemoryUsage int64 `json:"memory_usage"`
		MaxMemory   int64 `json:"max_memory"`
		Version     int64 `json:"version"`
		// ExpiredKeys is additive: keys removed because their TTL or
		// lease ran out since the node started.
		ExpiredKeys int64 `json:"expired_keys"`
	} `json:"storage"`
	Network struct {
		ActiveConnections int64  `json:"active_connections"`
		TotalRequests     int64  `json:"total_requests"`
		Address           string `json:"address"`
	} `json:"network"`
	Raft struct {
		NodeID      string `json:"node_id"`
		State       int32  `json:"state"`
		CurrentTerm uint64 `json:"current_term"`
		LeaderID    string `json:"leader_id"`
		LogLength   uint64 `json:"log_length"`
		CommitIndex uint64 `json:"commit_index"`
	} `json:"raft"`
	Metrics struct {
		UptimeSeconds float64                `json:"uptime_seconds"`
		Operations    map[string]statsOpJSON `json:"operations"`
	} `json:"metrics"`
	Transactions struct {
		Commits int64 `json:"commits"`
		Aborts  int64 `json:"aborts"`
		Active  int64 `json:"active"`
		Expired int64 `json:"expired"`
	} `json:"transactions"`
}

type statsOpJSON struct {
	Count      int64   `json:"count"`
	OpsPerSec  float64 `json:"ops_per_sec"`
	AvgLatency int64   `json:"avg_latency"`
	P95Latency int64   `json:"p95_latency"`
	P99Latency int64   `json:"p99_latency"`
}

// statsJSON encodes r in the STATS contract's shape. protojson.Unmarshal into a
// StatsResponse reads it back (it accepts numbers for 64-bit fields).
func statsJSON(r *kvdbv1.StatsResponse) ([]byte, error) {
	var d statsDoc
	st, nw, rf, m, tx := r.GetStorage(), r.GetNetwork(), r.GetRaft(), r.GetMetrics(), r.GetTransactions()
	d.Storage.Keys, d.Storage.MemoryUsage, d.Storage.MaxMemory, d.Storage.Version = st.GetKeys(), st.GetMemoryUsage(), st.GetMaxMemory(), st.GetVersion()
	d.Storage.ExpiredKeys = st.GetExpiredKeys()
	d.Network.ActiveConnections, d.Network.TotalRequests, d.Network.Address = nw.GetActiveConnections(), nw.GetTotalRequests(), nw.GetAddress()
	d.Raft.NodeID, d.Raft.State, d.Raft.CurrentTerm = rf.GetNodeId(), rf.GetState(), rf.GetCurrentTerm()
	d.Raft.LeaderID, d.Raft.LogLength, d.Raft.CommitIndex = rf.GetLeaderId(), rf.GetLogLength(), rf.GetCommitIndex()
	d.Metrics.UptimeSeconds = m.GetUptimeSeconds()
	d.Metrics.Operations = make(map[string]statsOpJSON, len(m.GetOperations()))
	for name, o := range m.GetOperations() {
		d.Metrics.Operations[name] = statsOpJSON{o.GetCount(), o.GetOpsPerSec(), o.GetAvgLatency(), o.GetP95Latency(), o.GetP99Latency()}
	}
	d.Transactions.Commits, d.Transactions.Aborts, d.Transactions.Active, d.Transactions.Expired = tx.GetCommits(), tx.GetAborts(), tx.GetActive(), tx.GetExpired()
	return json.Marshal(&d)
}
