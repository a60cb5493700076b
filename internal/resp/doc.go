// Package resp reads and writes the Redis serialization protocol (RESP2
// and RESP3) for the Redis-protocol adapter: a Reader that parses client
// commands (arrays of bulk strings, or inline lines) from a connection into
// a reused buffer, and Append functions that encode replies onto a byte
// slice. It knows nothing of KVDB's operations.
//
// Allocation is bounded by what arrives, never by what a peer declares: a
// declared bulk length or argument count over the Reader's limits is an
// error before anything is allocated for it, and the read buffer grows only
// as bytes arrive, up to the request limit. In steady state parsing a
// command and appending its reply allocate nothing.
package resp
