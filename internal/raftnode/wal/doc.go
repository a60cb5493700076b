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
// Save only buffers (it hands a large buffer to the OS early); Flush hands
// the buffer to the OS (survives a process crash); Sync is the group-commit
// point (flush + fsync). SaveSnapshot does
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
// # A full disk
//
// The one exception is a write(2) failing with ENOSPC or EDQUOT. Records
// are kept in the WAL's own buffer until the OS has accepted all of them,
// so such a failure loses nothing: the segment is truncated back to the
// offset where the buffer starts (a partial write may have landed; a
// truncation needs no space), the buffer is kept, and Flush or Sync return
// a *NoSpaceError (errors.Is ErrNoSpace). The WAL stays usable: Save keeps
// buffering, and the next Flush or Sync writes the same bytes at the same
// offset again. Creating the next segment on a full disk removes the half
// made file and leaves the current segment current, to be retried. An
// fsync failing with ENOSPC is still fatal (see above).
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
//   - A non-final segment's size is exactly its records, so "the record
//     ends at EOF" is well defined; only the current segment may have
//     zeros after its records (see "Zeros written ahead"), and rotation
//     cuts them off before the final fsync.
//   - The file MANIFEST names the newest segment. It is replaced (temp file,
//     fsync, rename, directory fsync) each time a segment has been created
//     and made durable with its header, before any entry is written to it.
//     A directory listing alone cannot show that the newest segments were
//     lost; the manifest can.
//   - The hard state's commit index never exceeds the last index in the
//     log: entries are written before the hard state that commits them.
//
// # Zeros written ahead
//
// Appending grows the file, and on ext4 an fsync that must commit a new
// file length waits for a journal commit: about 0.3 ms here against
// 0.15-0.2 ms for an fsync of data written over existing blocks. With
// Options.ZeroAhead (the fsync-per-write mode) the WAL keeps zeros
// written past the current segment's last record: when less than half of
// ZeroAhead is left, the next Sync writes zeros up to ZeroAhead past the
// records before its fsync, so one fsync per ZeroAhead/2 bytes of log
// commits a length and the ones between only write data. Records then
// overwrite zeros. Zeros are not records and tell recovery where the log
// ends; fallocate is no substitute (its unwritten extents make the first
// write to each block a metadata change again). Zeros must never take the
// space records need (a freed disk reserve, the next segment's manifest):
// when writing them fails they are cut off again, and after that or any
// other full-disk error no zeros are written ahead until the WAL is
// opened again.
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
// Open checks the chain before it reads a record, and refuses with a
// *CorruptionError naming the directory (or file) and the lost index range,
// modifying nothing, when:
//
//   - a sequence number is missing between two segments;
//   - the manifest names a newer segment than the newest file (the newest
//     segments were lost), or there are no segment files although the
//     manifest exists (the whole log was lost);
//   - there is no manifest but segments exist, unless the only one is the
//     first segment of a fresh directory holding nothing past its header
//     (a crash before its manifest was written): without the manifest
//     the loss of the newest segments could not be detected;
//   - a segment is empty: in the middle of the chain, or the newest one
//     when the manifest names it (its header was durable, so its contents
//     were lost);
//   - the entries do not start right after the snapshot marker;
//   - the log ends before the hard state's commit index, or before
//     Options.MinIndex (the caller's newest snapshot file).
//
// A newest segment the manifest does not name yet is a rotation a crash
// cut short; a missing or incomplete header there is rewritten.
//
// Segments are then read in sequence order. In the last segment, a zero
// header followed only by zeros up to EOF is the end of the log (zeros
// written ahead, or a filesystem that extended the file before the data
// reached the disk): kept as it is, with nothing to repair, and the next
// records are written over it. A torn tail is cut off (truncate, fsync,
// one log line saying the file, the offset, how many bytes were dropped,
// which entry indexes they held as far as they can be decoded, and the
// last index kept): a record the file ends inside of, or a final record
// whose checksum fails but which ends exactly at EOF (a torn write that
// reached its full length) or is followed only by zeros (a write torn in
// zeros written ahead). A final record whose header checksum fails
// otherwise only counts as torn if its claimed length ends exactly at EOF,
// no byte follows the header, or only zeros do: with a damaged length "the
// last record" cannot be established, so a garbled length followed by
// data is refused rather than guessed at. Any other damage, any damage in
// an earlier segment, a bad record followed by non-zero bytes, or an index
// discontinuity is reported as a *CorruptionError and nothing is modified:
// losing acknowledged data silently is worse than refusing to start.
package wal
