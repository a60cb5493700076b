// Package e2e runs the real kvdb-server and kvdbctl binaries on loopback:
// crash recovery with kill -9, graceful shutdown, and the CLI as a user
// types it. The binaries are built once per test run into a temp dir.
package e2e
