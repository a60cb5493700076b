// Package snap stores raft snapshot files: a small checksummed header
// carrying the raftpb.SnapshotMetadata, a streamed body, and a checksum
// trailer over the body.
//
// # Concurrency
//
// A Snapshotter is safe for concurrent use. Save writes to a unique temp file
// and publishes it with an atomic rename; Purge skips the temp files of Saves
// still in flight. A reader returned by Open keeps working if Purge removes
// its file meanwhile (POSIX unlink semantics).
//
// # Invariants
//
//   - A file named "%016x-%016x.snap" (term, index) is complete and fsynced:
//     it only appears through rename after fsync, followed by a directory
//     fsync. Anything else in the directory ending in ".snap.tmp" is debris
//     from a crashed Save.
//   - The body is never buffered in memory, on write or on read; its checksum
//     can therefore only be verified once it has been read to the end, which
//     is why the reader reports a mismatch in place of io.EOF.
//   - Latest validates the header and the file's length, not the body, so it
//     stays cheap for multi-gigabyte snapshots.
//
// # On-disk format
//
//	offset      size  field
//	0           8     magic "KVDBSNP1"
//	8           4     metadata length m, uint32 little endian (<= 64 MiB)
//	12          4     CRC-32C (Castagnoli) of bytes 8..11 followed by the metadata
//	16          m     raftpb.SnapshotMetadata, protobuf-encoded
//	16+m        b     body, opaque to this package
//	16+m+b      8     body length b, uint64 LE
//	24+m+b      4     CRC-32C of the body, uint32 LE
//
// The body length in the trailer lets a truncated file be detected before
// the body is streamed, and the metadata checksum covers its length so a
// damaged length cannot pass as valid.
package snap
