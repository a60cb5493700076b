// Package robustness runs the real kvdb-server against hostile input and
// failing storage on loopback: lost WAL files, a data dir reused under
// another name, a failed start, and a full disk (a small tmpfs, which needs
// root to mount; the test skips with a message elsewhere). Every case
// asserts that no acknowledged write is lost.
package robustness
