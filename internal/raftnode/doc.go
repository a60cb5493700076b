// Package raftnode drives go.etcd.io/raft/v3 for one KVDB node: the Ready
// loop, the write-ahead log and snapshot files, propose-and-wait, the
// linearizable read loop and the peer transport interface.
//
// # Ownership
//
// One goroutine (the raft loop) owns the raft.RawNode, the WAL and the raft
// MemoryStorage writes. Every other goroutine talks to it through bounded
// channels. A second goroutine (the apply loop) applies committed entries to
// the StateMachine in log order and is the only caller of StateMachine.Apply,
// Snapshot and Restore after start-up. Node's exported methods are safe for
// concurrent use.
//
// # The Ready contract
//
// raft.RawNode hands out work as a raft.Ready. The raft loop handles each
// Ready in this order, and the order is what makes the node safe:
//
//  1. Send the leader's messages first. A leader may replicate entries to
//     followers before it has written them itself (raft thesis §10.2.1): the
//     entries only count as committed once a quorum, which includes the
//     leader's own durable append, has acknowledged them, so sending early
//     costs nothing in safety and hides the leader's fsync behind the
//     network round trip.
//  2. Persist the snapshot (if any), the entries and the HardState to the WAL,
//     and fsync when Ready.MustSync says the term, vote or log changed and
//     -sync-writes is on. A follower's vote and log must be on disk before it
//     tells anyone about them, otherwise a restart could make it vote twice in
//     one term or forget entries it acknowledged.
//  3. Append the entries to the in-memory raft log (MemoryStorage) so that raft
//     can serve them to followers, then send the followers' messages (their
//     acknowledgements may only leave once step 2 made them true).
//  4. Hand CommittedEntries to the apply loop. They are applied strictly in
//     order; a committed entry is by definition durable on a quorum, so
//     applying it before this node's own next fsync is safe.
//  5. Call Advance, which tells raft the Ready was consumed and lets it produce
//     the next one. Nothing from a Ready may be touched after Advance.
//
// # Durability
//
// With SyncWrites, a write is acknowledged only after the WAL batch that holds
// it was fsynced (one fsync per Ready, shared by every proposal in it: group
// commit). Without SyncWrites, each Ready is written to the operating system
// before its entries are applied, so a killed process loses nothing, and a
// background fsync runs every SyncInterval: a machine crash can lose at most
// the writes of that last interval.
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
//   - If even the retry fails, the Ready stalls. Nothing after step 2 of the
//     contract happens for it: no follower message, no commit published, no
//     Advance, and RawNode.Ready is not called again. Ticks and peer
//     messages are still stepped (raft allows that between Ready and
//     Advance), except MsgApp, MsgSnap and MsgProp, which are dropped so the
//     unpersisted log does not grow (dropping a message is always safe in
//     raft). Every second the raft loop retries the write (only the write:
//     the records are already in the WAL's buffer, so a retry writes the
//     same bytes at the same offset); when it succeeds the Ready is finished
//     and advanced as if nothing had happened. A stalled leader stops
//     heartbeating, so its followers elect another one. Reads on a stalled
//     node time out.
//   - Every second the node also checks the free space. Once there is room
//     for twice the reserve (1 MiB without one), it recreates the reserve and
//     writes resume, without a restart.
//   - A node that cannot create its reserve at start-up fails to start with
//     an error IsNoSpace reports (kvdb-server exits with status 3).
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
//   - applied index <= commit index <= last log index.
//   - A snapshot file at index i exists before the WAL records a snapshot
//     marker at i, and WAL segments are released only after the marker.
//   - A snapshot file at index i is only published once the WAL on disk
//     holds index i: a local snapshot fsyncs the WAL first; a received one
//     is saved as "….snap.recv" and renamed once the WAL durably records
//     its marker. So a snapshot newer than the log means a lost log.
//   - A proposal's waiter is completed exactly once: with the apply result,
//     with an error when raft drops it, or by its context.
package raftnode
