// Package client is the Go client of KVDB. One Client speaks either
// transport of a node's port: gRPC (the default) or the pipelined binary
// protocol of docs/protocol.md (Options.Protocol = ProtocolBinary).
//
// A Client holds a pool of connections (Options.PoolSize) to the leader of
// the endpoints it was given, found through AdminService.Status and found
// again when a request fails with UNAVAILABLE (the node went away, is
// stopping or lost its leadership); callers failing together share one
// search. Reads (Get, Range, Ping, Stats) are retried with exponential
// backoff on UNAVAILABLE; writes and asynchronous calls are never retried,
// since a write whose reply was lost may have been applied, but the next
// request goes to the leader found.
// Every call takes a context; a call without a deadline gets
// Options.RequestTimeout.
//
// For throughput, the *Async methods return at once with a Future; on the
// binary transport many of them share one connection, pipelined, and their
// replies are matched by request id. A Pipeline goes further: the requests
// made through it until Flush go on one connection in one system call.
//
// Transactions: Begin returns a Txn (optimistic, serializable; Commit fails
// with ErrAborted on a conflict and the transaction should be retried from
// Begin). On the binary transport a Txn owns a connection of its own, since
// the protocol's transactions are connection-scoped. CompareAndSwap is the
// one-shot conditional write.
//
// Watches: Watch(ctx, key, opts...) returns a channel of WatchResponses,
// each one or more whole revisions of changes in order, until ctx ends.
// It runs over gRPC on the first endpoint whatever the Client's protocol,
// and when that node fails it resumes on the next endpoint from the
// revision after the last one delivered, so no change is missed or
// repeated. A revision that has left the history of every endpoint (each
// node keeps its own window) ends the channel with ErrCompacted and the
// oldest revision the last one holds.
//
// # Concurrency
//
// A Client and its Futures are safe for concurrent use. Returned values are
// owned by the caller.
package client
