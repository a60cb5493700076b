// Package wal is the raft log on disk: an append-only, checksummed sequence
// of segment files holding raft entries, HardStates and snapshot markers.
//
// # Concurrency
//
// A WAL belongs to the single raft goroutine: Save, Sync, SaveSnapshot,
// ReleaseTo and Close must not be called concurrently. Stats is the exception;
// it reads atomics and may be called from any goroutine (metrics scrapers).
// Only one WAL may have a directory open at a time; the caller guarantees
// that (no lock file is taken).
//
// # Durability
//
// Save only buffers; Flush hands the buffer to the OS (survives a process
// crash); Sync is the group-commit point (flush + fsync). SaveSnapshot does
// not sync, but ReleaseTo syncs before deleting, so the marker justifying a
// deletion is always durable first. Rotation
// fsyncs the outgoing segment before the next one is created, because
// recovery treats damage in any segment but the last as corruption: a
// non-final segment must therefore never have an unsynced tail.
//
// After any write or fsync error the WAL is poisoned and every later call
// returns that error: after a failed fsync the kernel may already have
// dropped the dirty pages, so retrying could report durability that does not
// exist.
//
// # Invariants
//
//   - Segment sequence numbers are contiguous; only a prefix is ever deleted
//     (ReleaseTo), so a gap means a file was lost.
//   - Every segment starts with two records, the latest snapshot marker and
//     the latest HardState (zero values included), so the chain is
//     self-describing once older segments are deleted.
//   - A segment's name carries the first raft index expected in it, which is
//     the last index (entry or snapshot) at the moment it was created plus one.
//   - Entries are appended contiguously: an entry's index is at most the last
//     index plus one and above the latest snapshot index. A lower index is a
//     raft log overwrite and truncates every previously saved entry at or
//     above it. The writer refuses input that recovery would later reject.
//   - Files are never preallocated: a segment's size is exactly its records,
//     so "the record ends at EOF" is well defined.
//
// # On-disk format
//
// Segment files are named "%016x-%016x.wal" (sequence, first index). Files
// in the directory with other names are ignored. A segment is a sequence of
// records:
//
//	offset  size  field
//	0       4     payload length n, uint32 little endian (1 <= n <= 64 MiB)
//	4       4     CRC-32C (Castagnoli) of the payload, uint32 LE
//	8       4     CRC-32C of bytes 0..7 of this header, uint32 LE
//	12      n     payload: 1 type byte + protobuf-encoded raftpb message
//
// Payload types: 1 = raftpb.Entry, 2 = raftpb.HardState, 3 = snapshot marker
// (raftpb.SnapshotMetadata with only Index and Term set).
//
// The separate header checksum lets recovery distinguish a corrupted length
// (header CRC fails) from a write that was torn by a crash (header intact,
// file ends early), and the length is bounded before anything is allocated.
//
// # Recovery
//
// Open reads segments in sequence order. In the last segment a torn tail is
// cut off (truncate, fsync, one log line): a record the file ends inside of,
// or a final record whose checksum fails but which ends exactly at EOF (a
// torn write that reached its full length). A final record whose header
// checksum fails only counts as torn if its claimed length ends exactly at
// EOF or no byte follows the header: with a damaged length "the last
// record" cannot be established, so a garbled length (or a zero-filled
// tail) is refused rather than guessed at. Any other damage, any damage in
// an earlier segment, a bad record followed by more bytes, a missing
// sequence number or an index discontinuity is reported as a
// *CorruptionError and nothing is modified: losing acknowledged data
// silently is worse than refusing to start.
package wal
