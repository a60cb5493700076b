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
// # Invariants
//
//   - applied index <= commit index <= last log index.
//   - A snapshot file at index i exists before the WAL records a snapshot
//     marker at i, and WAL segments are released only after the marker.
//   - A proposal's waiter is completed exactly once: with the apply result,
//     with an error when raft drops it, or by its context.
package raftnode
