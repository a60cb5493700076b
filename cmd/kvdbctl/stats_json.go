package main

import (
	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// StatsJSON is the STATS document as docs/monitoring.md defines it:
// four sections, snake_case names, numbers as JSON numbers. It is kept
// separate from the proto types (whose protojson form would print int64 as
// strings and camelCase names) so the documented shape cannot drift when the
// proto grows fields. Exported so other code can reuse it.
type StatsJSON struct {
	Storage StorageJSON `json:"storage"`
	Network NetworkJSON `json:"network"`
	Raft    RaftJSON    `json:"raft"`
	Metrics MetricsJSON `json:"metrics"`
	// Transactions is the additive fifth section: this node's transaction
	// counters.
	Transactions TransactionsJSON `json:"transactions"`
}

// TransactionsJSON is the "transactions" section.
type TransactionsJSON struct {
	Commits int64 `json:"commits"`
	Aborts  int64 `json:"aborts"`
	Active  int64 `json:"active"`
	Expired int64 `json:"expired"`
}

// StorageJSON is the "storage" section.
type StorageJSON struct {
	Keys        int64 `json:"keys"`
	MemoryUsage int64 `json:"memory_usage"`
	MaxMemory   int64 `json:"max_memory"`
	Version     int64 `json:"version"`
	// EvictedKeys and EvictionPolicy are additive: keys this node evicted
	// to stay under max_memory since it started, and what it does there.
	EvictedKeys    int64  `json:"evicted_keys"`
	EvictionPolicy string `json:"eviction_policy"`
	// ExpiredKeys is additive: keys this node removed because their TTL
	// or lease ran out, since it started.
	ExpiredKeys int64 `json:"expired_keys"`
}

// NetworkJSON is the "network" section.
type NetworkJSON struct {
	ActiveConnections int64  `json:"active_connections"`
	TotalRequests     int64  `json:"total_requests"`
	Address           string `json:"address"`
}

// RaftJSON is the "raft" section. State is the number the STATS contract shows
// (0 follower, 1 candidate, 2 leader, 3 pre-candidate); StateName spells
// it out as status does.
type RaftJSON struct {
	NodeID      string `json:"node_id"`
	State       int32  `json:"state"`
	StateName   string `json:"state_name"`
	CurrentTerm uint64 `json:"current_term"`
	LeaderID    string `json:"leader_id"`
	LogLength   uint64 `json:"log_length"`
	CommitIndex uint64 `json:"commit_index"`
}

// MetricsJSON is the "metrics" section; Operations is keyed by operation
// name (GET, PUT, ...) and printed in sorted order by encoding/json.
type MetricsJSON struct {
	UptimeSeconds float64                      `json:"uptime_seconds"`
	Operations    map[string]OperationStatJSON `json:"operations"`
}

// OperationStatJSON describes one operation; latencies are microseconds,
// under their original names and again under names that say so (*_us).
type OperationStatJSON struct {
	Count        int64   `json:"count"`
	OpsPerSec    float64 `json:"ops_per_sec"`
	AvgLatency   int64   `json:"avg_latency"`
	P95Latency   int64   `json:"p95_latency"`
	P99Latency   int64   `json:"p99_latency"`
	AvgLatencyUs int64   `json:"avg_latency_us"`
	P95LatencyUs int64   `json:"p95_latency_us"`
	P99LatencyUs int64   `json:"p99_latency_us"`
}

// raftStateName names a RaftStats.state number, for servers that do not
// send state_name.
func raftStateName(state int32) string {
	switch state {
	case 0:
		return "follower"
	case 1:
		return "candidate"
	case 2:
		return "leader"
	case 3:
		return "pre-candidate"
	}
	return "unknown"
}

// StatsToJSON converts a StatsResponse to the STATS contract's shape. Missing
// sections become zero values rather than disappearing, so consumers can
// rely on every field being present; operations is never null.
func StatsToJSON(resp *kvdbv1.StatsResponse) StatsJSON {
	st, nw, rf, m := resp.GetStorage(), resp.GetNetwork(), resp.GetRaft(), resp.GetMetrics()
	out := StatsJSON{
		Storage: StorageJSON{
			Keys:           st.GetKeys(),
			MemoryUsage:    st.GetMemoryUsage(),
			MaxMemory:      st.GetMaxMemory(),
			EvictedKeys:    st.GetEvictedKeys(),
			EvictionPolicy: st.GetEvictionPolicy(),
			ExpiredKeys:    st.GetExpiredKeys(),
			Version:        st.GetVersion(),
		},
		Network: NetworkJSON{
			ActiveConnections: nw.GetActiveConnections(),
			TotalRequests:     nw.GetTotalRequests(),
			Address:           nw.GetAddress(),
		},
		Raft: RaftJSON{
			NodeID:      rf.GetNodeId(),
			State:       rf.GetState(),
			StateName:   rf.GetStateName(),
			CurrentTerm: rf.GetCurrentTerm(),
			LeaderID:    rf.GetLeaderId(),
			LogLength:   rf.GetLogLength(),
			CommitIndex: rf.GetCommitIndex(),
		},
		Metrics: MetricsJSON{
			UptimeSeconds: m.GetUptimeSeconds(),
			Operations:    make(map[string]OperationStatJSON, len(m.GetOperations())),
		},
	}
	if out.Raft.StateName == "" {
		out.Raft.StateName = raftStateName(rf.GetState())
	}
	tx := resp.GetTransactions()
	out.Transactions = TransactionsJSON{Commits: tx.GetCommits(), Aborts: tx.GetAborts(), Active: tx.GetActive(), Expired: tx.GetExpired()}
	for name, op := range m.GetOperations() {
		out.Metrics.Operations[name] = OperationStatJSON{
			Count:      op.GetCount(),
			OpsPerSec:  op.GetOpsPerSec(),
			AvgLatency: op.GetAvgLatency(),
			P95Latency: op.GetP95Latency(),
			P99Latency: op.GetP99Latency(),

			AvgLatencyUs: op.GetAvgLatency(),
			P95LatencyUs: op.GetP95Latency(),
			P99LatencyUs: op.GetP99Latency(),
		}
	}
	return out
}
