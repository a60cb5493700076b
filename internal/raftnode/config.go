package raftnode

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/kvdb/kvdb/internal/raftnode/wal"
)

// Defaults follow etcd's: 100 ms heartbeat, 1 s election timeout, a snapshot
// every 10,000 applied entries keeping 5,000 for slow followers. Unlike
// etcd, the in-memory log is also bounded in bytes (DefaultSnapshotBytes,
// DefaultSnapshotCatchUpBytes): entries of large batches would otherwise
// keep hundreds of megabytes of replaced values alive.
const (
	DefaultTickInterval           = 100 * time.Millisecond
	DefaultElectionTicks          = 10
	DefaultHeartbeatTicks         = 1
	DefaultSyncInterval           = 100 * time.Millisecond
	DefaultSnapshotCount          = 10_000
	DefaultSnapshotCatchUpEntries = 5_000
	DefaultSnapshotBytes          = 64 << 20
	DefaultSnapshotCatchUpBytes   = 64 << 20
	DefaultMaxPendingProposals    = 20_000
	DefaultMaxApplyBacklog        = 50_000
	// DefaultMaxSizePerMsg bounds the entries of one MsgApp, and
	// DefaultMaxInflightMsgs how many MsgApps may be unacknowledged per
	// follower: replication is pipelined up to 256 MiB deep, so a follower
	// a round trip behind never stalls the leader. See doc.go,
	// "Replication flow control".
	DefaultMaxSizePerMsg      = 1 << 20
	DefaultMaxInflightMsgs    = 256
	DefaultMaxUncommittedSize = 64 << 20
)

// Config configures a Node. Zero durations and counts take the defaults.
type Config struct {
	// ID is this node's raft member id; never 0.
	ID uint64
	// Name, Address and PeerAddress describe this node to its peers
	// (PeerAddress is empty in the one-port form).
	Name        string
	Address     string
	PeerAddress string
	// ClientAddress is where clients reach this node when that differs from
	// Address (a port mapped by Docker, a load balancer); the gRPC transport
	// tells peers, so any member can name the leader's. Empty: Address.
	ClientAddress string
	// ClusterID identifies the cluster; peers from another cluster are
	// refused. A data dir keeps the id it was first started with; 0 leaves
	// the recorded one, or picks a random one for a fresh data dir.
	ClusterID uint64
	// Peers are the initial voters, this node included, for a fresh data
	// directory; ignored when the data directory holds state. Empty means a
	// single voter: this node alone.
	Peers []Member
	// Join starts a fresh node without bootstrapping: it waits for the
	// leader of an existing cluster (which must already have added it with
	// a membership change) to send it the log. JoinMembers seeds the
	// transport's address book.
	Join        bool
	JoinMembers []Member
	// Standalone marks a node that serves no raft traffic: it can only
	// ever be a lone voter, so a data dir whose recorded membership holds
	// other members is refused at start.
	Standalone bool
	// DataDir holds the wal/ and snap/ directories.
	DataDir string
	// SyncWrites fsyncs every Ready before its writes are acknowledged.
	SyncWrites bool
	// SyncInterval is the background fsync period when SyncWrites is off:
	// the most a machine crash can lose.
	SyncInterval time.Duration
	// TickInterval is the raft logical clock period.
	TickInterval time.Duration
	// Ticks, when not nil, replaces the TickInterval ticker: the raft loop
	// advances the logical clock once per value received. Tests drive
	// elections, read-round and leader-change failures and membership
	// timeouts with it tick by tick, without sleeping.
	Ticks <-chan time.Time
	// ElectionTicks and HeartbeatTicks are in TickIntervals.
	ElectionTicks  int
	HeartbeatTicks int
	// SnapshotCount is the number of applied entries between snapshots.
	SnapshotCount uint64
	// SnapshotBytes: a snapshot is also taken once the entries applied
	// since the last one hold this many bytes, or as many as the last
	// snapshot's file if that is larger (so a large store is not written
	// out more often than its own size in writes).
	SnapshotBytes uint64
	// SnapshotCatchUpEntries is how many entries before a snapshot stay in the
	// in-memory log so a slightly lagging follower needs no snapshot, and
	// SnapshotCatchUpBytes the most bytes those entries may hold.
	SnapshotCatchUpEntries uint64
	SnapshotCatchUpBytes   uint64
	// MaxPendingProposals bounds proposals waiting for their result.
	MaxPendingProposals int
	// MaxApplyBacklog bounds committed-but-not-applied entries; past it new
	// proposals are refused with ErrOverloaded.
	MaxApplyBacklog uint64
	// MaxUncommittedSize bounds the bytes of uncommitted entries raft holds.
	MaxUncommittedSize uint64
	// WALSegmentSize is the WAL rotation size (0: the wal package default).
	WALSegmentSize int64
	// DiskReserve is how many bytes of the data dir's file system the node
	// holds in a reserve file, freed when the disk fills up so the writes
	// in flight can finish (see doc.go, "A full disk"). 0: no reserve.
	DiskReserve int64
	// WALFaults, when set, injects one storage failure into the WAL
	// (fault-injection tests only; see wal.Faults).
	WALFaults *wal.Faults
	// Transport sends raft messages to peers; nil for a single voter.
	Transport Transport
	// Logger receives the node's log lines; nil means slog.Default().
	Logger *slog.Logger
	// Metrics receives the node's events; nil means NopMetrics.
	Metrics Metrics

	// beforeWALWrite, when set (tests only), runs on the WAL goroutine
	// before each group of appends is written; it may block to hold them.
	beforeWALWrite func(apps []*raftpb.Message)
}

func (c *Config) setDefaults() {
	if c.ClientAddress == "" {
		c.ClientAddress = c.Address
	}
	if c.SyncInterval <= 0 {
		c.SyncInterval = DefaultSyncInterval
	}
	if c.TickInterval <= 0 {
		c.TickInterval = DefaultTickInterval
	}
	if c.ElectionTicks <= 0 {
		c.ElectionTicks = DefaultElectionTicks
	}
	if c.HeartbeatTicks <= 0 {
		c.HeartbeatTicks = DefaultHeartbeatTicks
	}
	if c.SnapshotCount == 0 {
		c.SnapshotCount = DefaultSnapshotCount
	}
	if c.SnapshotCatchUpEntries == 0 {
		c.SnapshotCatchUpEntries = DefaultSnapshotCatchUpEntries
	}
	if c.SnapshotBytes == 0 {
		c.SnapshotBytes = DefaultSnapshotBytes
	}
	if c.SnapshotCatchUpBytes == 0 {
		c.SnapshotCatchUpBytes = DefaultSnapshotCatchUpBytes
	}
	if c.MaxPendingProposals <= 0 {
		c.MaxPendingProposals = DefaultMaxPendingProposals
	}
	if c.MaxApplyBacklog == 0 {
		c.MaxApplyBacklog = DefaultMaxApplyBacklog
	}
	if c.MaxUncommittedSize == 0 {
		c.MaxUncommittedSize = DefaultMaxUncommittedSize
	}
	if c.Transport == nil {
		c.Transport = nopTransport{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = NopMetrics{}
	}
	if len(c.Peers) == 0 && !c.Join {
		c.Peers = []Member{{ID: c.ID, Name: c.Name, Address: c.Address, PeerAddress: c.PeerAddress}}
	}
}

func (c *Config) validate() error {
	if c.ID == 0 {
		return errors.New("raftnode: member id must not be 0")
	}
	if c.DataDir == "" {
		return errors.New("raftnode: data dir must be set")
	}
	self := false
	for _, p := range c.Peers {
		if p.ID == 0 {
			return fmt.Errorf("raftnode: peer %q has member id 0", p.Name)
		}
		self = self || p.ID == c.ID
	}
	if len(c.Peers) > 0 && !self {
		return errors.New("raftnode: the initial members must include this node")
	}
	if c.ElectionTicks <= c.HeartbeatTicks {
		return fmt.Errorf("raftnode: election ticks (%d) must exceed heartbeat ticks (%d)", c.ElectionTicks, c.HeartbeatTicks)
	}
	return nil
}
