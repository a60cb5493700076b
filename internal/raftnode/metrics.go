package raftnode

import "time"

// Metrics receives the node's events for instrumentation. raftnode knows
// nothing of any metrics library: the service implements this interface
// (with Prometheus) and hands it over in Config.Metrics.
//
// Methods are called from the raft loop, the apply loop, the snapshot
// writer and proposing goroutines, so implementations must be safe for
// concurrent use; they must also be cheap and never block, since most are
// called on the raft or apply loop.
type Metrics interface {
	// LeaderChanged is called once each time the node sees a different
	// leader (0: none).
	LeaderChanged(leader uint64)
	// ProposalFailed is called when Propose returns an error: dropped,
	// refused for overload, cancelled, timed out or stopped.
	ProposalFailed(err error)
	// EntryApplied is called after each committed normal entry carrying a
	// command has been applied to the state machine, with how long that took.
	EntryApplied(d time.Duration)
	// WALSynced is called after each WAL fsync with its duration.
	WALSynced(d time.Duration)
	// SnapshotSaved is called once a snapshot file is written, with how long
	// writing it took and its size in bytes.
	SnapshotSaved(d time.Duration, bytes int64)
}

// NopMetrics is the Metrics used when Config.Metrics is nil.
type NopMetrics struct{}

var _ Metrics = NopMetrics{}

func (NopMetrics) LeaderChanged(uint64)               {}
func (NopMetrics) ProposalFailed(error)               {}
func (NopMetrics) EntryApplied(time.Duration)         {}
func (NopMetrics) WALSynced(time.Duration)            {}
func (NopMetrics) SnapshotSaved(time.Duration, int64) {}

// Stats are cumulative counters of the node's durable storage, for metrics.
type Stats struct {
	// WALBytesWritten counts bytes written to WAL segments since start.
	WALBytesWritten int64
	// WALSyncs counts WAL fsyncs since start.
	WALSyncs int64
	// PendingProposals is the number of proposals waiting for their result.
	PendingProposals int64
}
