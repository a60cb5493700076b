// Package engine is KVDB's ordered in-memory key-value store: the state
// machine every replica applies committed raft entries to.
//
// # Data model
//
// Keys are non-empty byte strings ordered bytewise. Every key carries three
// revisions with etcd semantics: CreateRevision (the store revision at which
// the key was last created), ModRevision (the revision of its last
// modification) and Version (the number of puts since creation). The store
// revision moves by exactly one per Apply that changes something, so a
// revision names a consistent state shared by all replicas.
//
// # Concurrency contract
//
//   - Exactly one goroutine (the raft apply loop) calls Apply, ApplyEach,
//     ApplyTxn, ApplyEvict, MarkApplied and Restore, in log order. They are
//     not safe to call concurrently with each other.
//   - Get, Range, Revision, AppliedIndex, Len, MemoryUsage, EvictedKeys,
//     Hash and Snapshot are safe to call from any number of goroutines,
//     concurrently with the writer. An Evictor is owned by one goroutine
//     but may run concurrently with the writer and readers.
//   - A Snapshot, once taken, is immutable and safe for concurrent use; it
//     never blocks the store.
//
// # Invariants
//
//   - The map (point reads) and the B-tree (ordered scans) always hold the
//     same set of *entry pointers; both are only changed under the write lock,
//     so readers never observe a half-applied Apply.
//   - An *entry is immutable once published. Updates install a new entry.
//     The one mutable field is the access stamp used by eviction sampling:
//     it is outside the replicated state (never hashed, snapshotted or
//     compared) and only read and written atomically.
//   - MemoryUsage is the sum of entrySize over all entries (about
//     len(key)+len(value)+EntryOverhead). It changes only in apply, so it is identical on every
//     replica. Eviction is an applied command (ApplyEvict) naming keys with
//     their mod revisions; the Evictor that chooses them reads recency,
//     which differs between replicas, but only the leader's choice is ever
//     applied.
//     This is what makes copy-on-write snapshots (btree.Copy) safe: a snapshot
//     may share entries with the live tree forever.
//   - Bytes returned to callers (KeyValue.Key, KeyValue.Value) alias entry
//     memory and must never be modified by callers.
//   - AppliedIndex never decreases except through Restore; Apply ignores
//     entries at or below it, which makes log replay idempotent.
//   - Every change of a key goes through put or remove (apply.go), which
//     record it for the Observer (observe.go); every apply path that moves
//     the revision does so through setRevision, which hands the revision's
//     changes to the Observer before the write lock is released. Watches
//     rely on this: a new removal or write path (expiry, lease revocation)
//     produces events by using these primitives.
//   - Every key/value accepted by ValidateOp fits the snapshot format limits
//     (MaxKeySize, MaxValueSize), so every state can be snapshotted and
//     restored.
//
// # Expiring keys
//
// A key may carry a deadline (unix milliseconds) and a lease id, fixed by
// the write that stored it (Op.Deadline, Op.Lease). The store keeps a
// deadline index and a lease table (id, TTL, attached keys), changed only
// in apply; nothing here reads a clock. ApplyExpire and ApplyLeaseRevoke
// remove keys the leader decided are due, through the same removal as
// deletes. Reads may hide keys past a given time (RangeOptions.Now).
//
// # Snapshot format (version 2)
//
//	"KVDBSNAP"                 8 bytes magic
//	format version             uint16 big endian
//	applied index              uint64 big endian
//	revision                   uint64 big endian
//	entry count                uint64 big endian
//	entries, strictly increasing key order:
//	  uvarint len(key), key, uvarint len(value), value,
//	  flags byte (0x40: a deadline follows, 0x80: a lease follows),
//	  varint create, varint mod, varint version
//	  [varint deadline] [varint lease]
//	lease count                uint64 big endian
//	leases, increasing id:     varint id, varint ttl
//	CRC32C (Castagnoli)        uint32 big endian, over every preceding byte
//
// Version 1, still read, has no flags byte and no lease section.
package engine
