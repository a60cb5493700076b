package service

import (
	"errors"
	"net/http"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.etcd.io/raft/v3"

	"github.com/kvdb/kvdb/internal/raftnode"
	"github.com/kvdb/kvdb/internal/wire"
)

// Every metric is registered on the Server's own registry, never on the
// global one: a process (a test) may run many servers. docs/monitoring.md
// lists them all; keep it in step with this file.

// durationBuckets cover 100 µs to ~13 s (fsyncs, applies, snapshots).
var durationBuckets = prometheus.ExponentialBuckets(0.0001, 2, 18)

// serverMetrics holds the instruments the server updates on events. The
// rest are read at scrape time from the state STATS reads (GaugeFunc,
// CounterFunc), so both always agree. It implements raftnode.Metrics.
type serverMetrics struct {
	reg *prometheus.Registry

	leaderChanges   prometheus.Counter
	proposalsFailed prometheus.Counter
	applyDuration   prometheus.Histogram
	walFsync        prometheus.Histogram
	snapshotSave    prometheus.Histogram
	snapshotBytes   prometheus.Gauge
	binaryRequests  [wire.LastOpcode + 1]prometheus.Counter
	respCommands    map[string]prometheus.Counter
	respUnknown     prometheus.Counter
	respConnsTotal  prometheus.Counter
	grpc            *grpcprom.ServerMetrics
}

var _ raftnode.Metrics = (*serverMetrics)(nil)

func newServerMetrics() *serverMetrics {
	m := &serverMetrics{
		reg: prometheus.NewRegistry(),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvdb_server_leader_changes_seen_total",
			Help: "Leader changes this node has seen (including to no leader).",
		}),
		proposalsFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvdb_server_proposals_failed_total",
			Help: "Proposals that returned an error: dropped, overloaded, timed out, cancelled or stopped.",
		}),
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kvdb_server_apply_duration_seconds",
			Help:    "Time to apply one committed command to the store.",
			Buckets: durationBuckets,
		}),
		walFsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kvdb_wal_fsync_duration_seconds",
			Help:    "Latency of WAL segment fsyncs.",
			Buckets: durationBuckets,
		}),
		snapshotSave: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kvdb_snapshot_save_duration_seconds",
			Help:    "Time to write a snapshot file.",
			Buckets: durationBuckets,
		}),
		snapshotBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kvdb_snapshot_size_bytes",
			Help: "Size of the last snapshot this node wrote.",
		}),
		grpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets(durationBuckets))),
	}
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kvdb_binary_requests_total",
		Help: "Binary-protocol requests received, by opcode.",
	}, []string{"opcode"})
	for op := wire.OpPing; op <= wire.LastOpcode; op++ {
		m.binaryRequests[op] = reqs.WithLabelValues(op.String())
	}
	respReqs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kvdb_resp_commands_total",
		Help: "Redis-protocol commands received, by command (unknown: not a command KVDB has).",
	}, []string{"command"})
	m.respCommands = make(map[string]prometheus.Counter, len(respCommands))
	for name := range respCommands {
		m.respCommands[name] = respReqs.WithLabelValues(name)
	}
	m.respUnknown = respReqs.WithLabelValues("unknown")
	m.respConnsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kvdb_resp_connections_total",
		Help: "Redis-protocol connections accepted (on -address and -resp-address).",
	})
	m.reg.MustRegister(m.leaderChanges, m.proposalsFailed, m.applyDuration, m.walFsync,
		m.snapshotSave, m.snapshotBytes, reqs, respReqs, m.respConnsTotal, m.grpc,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *serverMetrics) LeaderChanged(uint64) { m.leaderChanges.Inc() }

func (m *serverMetrics) ProposalFailed(error) { m.proposalsFailed.Inc() }

func (m *serverMetrics) EntryApplied(d time.Duration) { m.applyDuration.Observe(d.Seconds()) }

func (m *serverMetrics) WALSynced(d time.Duration) { m.walFsync.Observe(d.Seconds()) }

func (m *serverMetrics) SnapshotSaved(d time.Duration, bytes int64) {
	m.snapshotSave.Observe(d.Seconds())
	m.snapshotBytes.Set(float64(bytes))
}

// respCommand counts one Redis-protocol command (nil: unknown).
func (m *serverMetrics) respCommand(cmd *respCommand) {
	if cmd == nil {
		m.respUnknown.Inc()
		return
	}
	m.respCommands[cmd.name].Inc()
}

func (m *serverMetrics) binaryRequest(op wire.Opcode) {
	if op.Valid() {
		m.binaryRequests[op].Inc()
	}
}

// registerStateMetrics adds the metrics read from the server's state at
// scrape time. It runs once the raft node exists.
func (s *Server) registerStateMetrics() {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	st := s.node.Status
	s.metrics.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "kvdb_build_info",
			Help:        "Always 1; the version label is the server's build.",
			ConstLabels: prometheus.Labels{"version": s.cfg.Version, "node_id": s.cfg.NodeID},
		}, func() float64 { return 1 }),
		gauge("kvdb_server_has_leader", "1 when this node knows a leader, else 0.",
			func() float64 { return b2f(st().Leader != raft.None) }),
		gauge("kvdb_server_is_leader", "1 when this node is the leader, else 0.",
			func() float64 { return b2f(st().State == raft.StateLeader) }),
		gauge("kvdb_server_ready", "1 when the node serves (gRPC health SERVING, /readyz 200), else 0.",
			func() float64 { ok, _ := s.ready(); return b2f(ok) }),
		gauge("kvdb_raft_term", "Current raft term.", func() float64 { return float64(st().Term) }),
		counter("kvdb_server_proposals_committed_total", "Raft index this node knows to be committed.",
			func() float64 { return float64(st().Commit) }),
		counter("kvdb_server_proposals_applied_total", "Raft index this node has applied to its store.",
			func() float64 { return float64(st().Applied) }),
		gauge("kvdb_server_proposals_pending", "Proposals waiting to be committed and applied.",
			func() float64 { return float64(s.node.Stats().PendingProposals) }),
		gauge("kvdb_raft_log_last_index", "Index of the last entry in this node's raft log.",
			func() float64 { return float64(st().LastIndex) }),
		gauge("kvdb_snapshot_last_index", "Raft index of the newest snapshot on disk.",
			func() float64 { return float64(st().SnapshotIndex) }),
		gauge("kvdb_disk_full", "1 while the data dir's file system is full and writes are refused, else 0.",
			func() float64 { return b2f(s.node.DiskFull() != nil) }),
		counter("kvdb_wal_written_bytes_total", "Bytes written to WAL segment files.",
			func() float64 { return float64(s.node.Stats().WALBytesWritten) }),
		gauge("kvdb_store_keys", "Keys in the store.", func() float64 { return float64(s.store.Len()) }),
		gauge("kvdb_store_memory_used_bytes", "Logical size of the stored data (keys, values, per-entry overhead).",
			func() float64 { return float64(s.store.MemoryUsage()) }),
		gauge("kvdb_store_memory_limit_bytes", "Configured -max-memory (0: no limit).",
			func() float64 { return float64(s.cfg.MaxMemory) }),
		counter("kvdb_evicted_keys_total", "Keys evicted to stay under -max-memory.",
			func() float64 { return float64(s.store.EvictedKeys()) }),
		counter("kvdb_expired_keys_total", "Keys removed because their TTL or lease ran out.",
			func() float64 { return float64(s.store.ExpiredKeys()) }),
		gauge("kvdb_keys_with_ttl", "Keys that have a TTL.",
			func() float64 { return float64(s.store.KeysWithDeadline()) }),
		gauge("kvdb_leases", "Leases granted and not yet revoked or expired.",
			func() float64 { return float64(s.store.LeaseCount()) }),
		gauge("kvdb_store_revision", "Store revision (bumped by every applied write).",
			func() float64 { return float64(s.store.Revision()) }),
		counter("kvdb_txn_commits_total", "Transactions committed.", func() float64 { return float64(s.txnStat(1)) }),
		counter("kvdb_txn_aborts_total", "Transactions aborted on a conflict.", func() float64 { return float64(s.txnStat(2)) }),
		counter("kvdb_txn_expired_total", "Interactive transactions discarded after the idle timeout.",
			func() float64 { return float64(s.txnStat(3)) }),
		gauge("kvdb_txn_active", "Interactive transactions open on this node.", func() float64 { return float64(s.txnStat(0)) }),
		counter("kvdb_auth_failures_total", "Logins refused on this node: wrong name or password, or throttled after repeated failures.",
			func() float64 { return float64(s.core.AuthFailures()) }),
		gauge("kvdb_auth_enabled", "1 while authentication is enabled cluster-wide, else 0.",
			func() float64 { return b2f(s.core.AuthEnabled()) }),
		gauge("kvdb_client_connections", "Open TCP connections on -address (all protocols, peers included).",
			func() float64 { return float64(s.conns.Load()) }),
		gauge("kvdb_binary_connections", "Open binary-protocol connections.",
			func() float64 { return float64(s.binary.connCount()) }),
		gauge("kvdb_resp_connections", "Open Redis-protocol connections.",
			func() float64 { return float64(s.resp.connCount()) }),
		s.ops,
	)
	s.metrics.reg.MustRegister(s.watchMetrics()...)
}

// MetricsHandler serves the node's registry in the Prometheus text format.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{Registry: s.metrics.reg})
}

// errMetricsDisabled is returned by ServeMetrics when metrics are off.
var errMetricsDisabled = errors.New("service: metrics are disabled (-enable-metrics=false)")

// txnStat reads one of core.TxnStats: 0 active, 1 commits, 2 aborts,
// 3 expired.
func (s *Server) txnStat(i int) int64 {
	active, commits, aborts, expired := s.core.TxnStats()
	return [4]int64{int64(active), commits, aborts, expired}[i]
}
