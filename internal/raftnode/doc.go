// Package raftnode drives go.etcd.io/raft/v3 for one KVDB node: the Ready
// loop, the write-ahead log and snapshot files, propose-and-wait, the
// linearizable read loop and the peer transport interface.
//
// # Ownership
//
// One goroutine (the raft loop) owns the raft.RawNode. A second one (the
// WAL goroutine) owns the WAL, the disk reserve and the raft MemoryStorage
// writes. A third (the apply loop) applies committed entries to the
// StateMachine in log order and is the only caller of StateMachine.Apply,
// Snapshot and Restore after start-up. Every other goroutine talks to them
// through bounded channels or the WAL goroutine's queue. Node's exported
// methods are safe for concurrent use.
//
// # The raft loop never waits for the disk
//
// The RawNode runs with etcd raft's AsyncStorageWrites: a Ready carries its
// log append as a MsgStorageAppend message (entries, HardState, snapshot)
// and its committed entries as a MsgStorageApply message, each with the
// Responses that may only be delivered once that work is done. The raft
// loop handles each Ready without touching the disk, in this order:
//
//  1. Messages to peers that need nothing persisted leave at once. On a
//     leader these are its MsgApps: a leader may replicate entries before
//     it has written them itself (raft thesis §10.2.1), because an entry
//     only commits once a quorum has acknowledged it, and the leader counts
//     its own acknowledgement only when its own append is durable (below).
//     Sending first hides the leader's fsync behind the network round trip.
//  2. The MsgStorageAppend goes to the WAL goroutine's queue; the raft loop
//     goes on at once: it accepts proposals, steps peer messages, sends the
//     next Ready's MsgApps and hands out commits while the disk works.
//  3. The MsgStorageApply's entries go to the apply loop's queue, and raft
//     is told at once that they are applied (its applied index only paces
//     its own bookkeeping: readers wait on the apply loop's index, and
//     membership changes take effect in raft here, as the entry is handed
//     over, exactly as they did under the synchronous contract).
//  4. ReadStates resolve the read round waiting for them.
//
// The WAL goroutine takes everything queued since its last write as one
// group (group commit: one write and at most one fsync cover every append
// that arrived while the previous one was on the disk, so groups grow with
// load) and then, in queue order:
//
//  5. Writes the group's records, and fsyncs them when -sync-writes is on
//     and an entry, term or vote changed (raft.MustSync), or when the group
//     holds a snapshot. Without -sync-writes the records still reach the
//     operating system (write(2)) before step 6, so a killed process loses
//     nothing; a background fsync runs every SyncInterval. A group that
//     only moves the commit index is not written at all: nothing in it
//     claims durability (raft recovers the commit index, and every earlier
//     group was written first), so its record waits in the WAL's buffer for
//     the next write, saving a system call per commit.
//  6. Installs a received snapshot (file, MemoryStorage, and a restore
//     queued for the apply loop), stores the HardState and appends the
//     entries to MemoryStorage, so raft can serve them to followers.
//  7. Only then delivers the Responses: to peers (a follower's MsgAppResp,
//     its votes) through the transport, and to this node's raft
//     (MsgStorageAppendResp, the leader's own MsgAppResp, its own vote)
//     back through the raft loop.
//
// Why each ordering is safe:
//
//   - Nothing that claims durability leaves before step 5 completes: a
//     follower's acknowledgement or vote, and a leader's count of itself
//     toward a quorum, are Responses, which raft builds for exactly that
//     purpose. A restart can therefore never make a node vote twice in a
//     term or forget an entry it acknowledged.
//   - raft only hands out committed entries that are stable locally
//     (AsyncStorageWrites does not apply unstable entries), so a write is
//     applied, and its client answered, only after this node's own write
//     of it, and with -sync-writes after its fsync: a write is acknowledged
//     only once it is durable here and on a quorum.
//   - Appends are written in the order raft produced them, one goroutine
//     writing them, so the WAL stays a prefix-consistent copy of raft's log;
//     a later append that overwrites a suffix (a new leader's log) is
//     written after the one it overwrites, and the WAL truncates.
//   - MemoryStorage gains entries only after they are written, and before
//     raft hears they are stable, so raft never reads an entry from storage
//     that a crash could lose, and never drops an unstable entry it still
//     needs.
//   - A received snapshot's restore is queued for the apply loop before
//     raft hears the snapshot is stable, so every entry raft hands out after
//     it reaches the apply loop after the restore.
//   - Peer messages claiming to come from the local storage threads are
//     dropped (Step): only the WAL goroutine speaks for this node's disk.
//
// # Durability
//
// With SyncWrites, a write is acknowledged only after the WAL group that
// holds it was fsynced (one fsync per group, shared by every proposal in
// it). Without SyncWrites, every group is written to the operating system
// before its entries can be applied, so a killed process loses nothing, and
// a background fsync runs every SyncInterval: a machine crash can lose at
// most the writes of that last interval. wal.Faults injects crashes at each
// point of this path (after a write and before its fsync, torn writes,
// failing fsyncs); internal/service's TestCrashPointsKeepAcknowledgedWrites
// checks no acknowledged write is lost and no batch is half applied.
//
// # Replication flow control
//
// DefaultMaxInflightMsgs (256) MsgApps may be in flight to a follower
// before the leader waits for an acknowledgement, each carrying up to
// DefaultMaxSizePerMsg (1 MiB) of entries: replication is pipelined, and a
// follower that is a full round trip behind still has 256 batches coming.
// One coalesced entry is at most 1 MiB (internal/core), so a message
// usually carries several entries under load and a burst of up to 256 MiB
// can be in flight per follower, bounded in turn by MaxUncommittedSize on
// the leader. Smaller messages would cost a round trip per few entries on
// a busy leader; more in flight would only wait in the transport's
// per-peer queue (4096 messages, heartbeats and acknowledgements included)
// behind a follower that is not keeping up anyway.
//
// # Reads
//
// Linearizable reads work on every member, the followers included: each
// node batches its waiting readers into one ReadIndex round (a follower's
// round is forwarded to the leader, which confirms its leadership with a
// heartbeat round and answers with its commit index) and reads locally
// once its apply loop has reached that index. Serving reads on followers
// spreads read load over the cluster.
//
// A leader never hands readers an index below the first entry of its term
// (readLoop.resolve). raft answers a lone voter's ReadIndex with its commit
// index at once, before that entry is committed, and after a restart the
// recovered commit index can be behind entries that were applied and
// acknowledged before the crash (a HardState that only moves the commit
// index is not waited for): without the floor a read right after the
// restart could miss the last acknowledged writes.
//
// A lone voter's leader skips the round (readlocal.go): the raft loop
// publishes its commit index after every iteration once an entry of the
// current term is committed (so the index is past that floor; cleared at
// any membership or state change) and readers wait for the apply loop to
// reach it without entering the raft loop.
//
// # A full disk
//
// etcd panics when its WAL cannot be written; a KVDB node instead treats a
// full file system (ENOSPC, EDQUOT) as a state it can leave again:
//
//   - The wal package never loses buffered records to ENOSPC: it cuts the
//     segment back to its last complete record, keeps the records in its
//     buffer and returns ErrNoSpace; the same Flush or Sync can be retried.
//   - The node holds Config.DiskReserve bytes in a file (space.reserve) in
//     the data dir. The first WAL write that fails for lack of space
//     switches the node to "disk full" (DiskFull returns a *DiskFullError,
//     one error log line) and deletes the reserve, then retries the same
//     write once: that usually succeeds, so the Ready in flight completes
//     and the node keeps working for everything but new writes.
//   - While the disk is full, proposals and membership changes fail at once
//     with the *DiskFullError (errors.Is ErrNoSpace; the service maps it to
//     RESOURCE_EXHAUSTED), naming the data dir and "no space left". Reads
//     keep working: ReadIndex rounds, heartbeats and applying only need the
//     small hard-state records the freed reserve has room for.
//   - If even the retry fails, the WAL group stalls on the WAL goroutine.
//     Nothing after step 5 happens for it (no Responses: no acknowledgement
//     to a peer, no own append acknowledgement, so nothing of it commits
//     through this node or is applied), and the appends queued behind it
//     wait. The raft loop sees the stall and stops calling RawNode.Ready:
//     ticks and peer messages are still stepped, except MsgApp, MsgSnap
//     and MsgProp, which are dropped so the unpersisted log does not grow
//     (dropping a message is always safe in raft). Every second the WAL
//     goroutine retries the write (only the write: the records are already
//     in the WAL's buffer, so a retry writes the same bytes at the same
//     offset); when it succeeds the group is finished as if nothing had
//     happened and the raft loop resumes. A stalled leader stops
//     heartbeating, so its followers elect another one. Reads on a stalled
//     node time out.
//   - Every second the node also checks the free space. Once there is room
//     for twice the reserve (1 MiB without one), it recreates the reserve and
//     writes resume, without a restart.
//   - A node that cannot create its reserve at start-up fails to start with
//     an error IsNoSpace reports (kvdb-server exits with status 3).
//
// # Snapshots and the in-memory log
//
// The apply loop takes a snapshot every SnapshotCount applied entries, or
// once the entries applied since the last one hold SnapshotBytes, or as
// many bytes as the last snapshot file if that is larger: snapshots of a
// large store come no more often than once per its own size in writes.
// After the snapshot is recorded the WAL goroutine compacts MemoryStorage,
// keeping SnapshotCatchUpEntries entries before the snapshot for lagging
// followers, and of those no more than SnapshotCatchUpBytes. Bounding the
// log in bytes matters for memory and speed alike: 10,000 entries of
// 100-key batches held over 250 MiB, and a heap that keeps growing pays a
// page fault for every fresh page (in a 3-node batch benchmark, copying
// into and initialising fresh memory took 40% of a follower's CPU).
//
// # Storage integrity
//
// The WAL refuses a log that lost segments, ends before its hard state's
// commit index or ends before the newest snapshot file (see package wal).
// The data dir records the member it belongs to (member_id) and the cluster
// (cluster_id); a data dir with another member's id, or with cluster_id but
// no WAL, is refused. A start that fails removes whatever it created.
//
// # Membership
//
// A node that applies its own removal shuts itself down (Done closes, Stop
// returns ErrRemoved); a data dir whose snapshot records this member as
// removed is refused at start.
//
// # Invariants
//
//   - applied index <= commit index. The published last index is the last
//     one written to the WAL; on a follower it may trail the commit index
//     for a moment (raft can learn an entry is committed before this node
//     has written it; it is applied only once written).
//   - A snapshot file at index i exists before the WAL records a snapshot
//     marker at i, and WAL segments are released only after the marker.
//   - A snapshot file at index i is only published once the WAL on disk
//     holds index i: a local snapshot fsyncs the WAL first; a received one
//     is saved as "….snap.recv" and renamed once the WAL durably records
//     its marker. So a snapshot newer than the log means a lost log.
//   - A proposal's waiter is completed exactly once: with the apply result,
//     with an error when raft drops it, or by its context.
package raftnode
