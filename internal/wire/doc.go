// Package wire is KVDB's binary protocol: the handshake, the frame layout
// and the encoding of every request and response body. docs/protocol.md is
// its specification; the examples there are produced by this package's tests.
//
// # Layout
//
// A connection starts with an 8-byte client hello (Magic, Version) answered
// by a 16-byte server hello. After it both directions carry frames:
//
//	length u32 | opcode u8 | flags u8 | status u8 | reserved u8 | request id u64 | body
//
// length counts every byte after itself. All integers are big-endian.
//
// # Limits and allocation
//
// Every length read from the network is checked against a limit before
// anything is allocated for it: a frame against the reader's max frame size,
// every inner length against the bytes that remain in the frame, and counts
// (batch ops, range results) against what the remaining bytes could hold.
// The Reader's buffer grows with the bytes that arrived (at most twofold per
// full buffer), never with a declared length alone, and goes back to its
// initial size once a large frame is consumed; an optional Budget caps what
// many Readers hold together. A hostile peer therefore cannot make the reader
// or a decoder allocate more than about twice what it already sent.
//
// # Ownership and concurrency
//
// Decoded requests and responses alias the frame they were decoded from (no
// copies); they are valid until the Reader that produced the frame is read
// again. Copy what must outlive that. Encoders append to a caller-owned slice.
// A Reader is used by one goroutine; the codec functions are pure and safe
// for concurrent use.
package wire
