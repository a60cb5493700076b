// Command kvdbctl is the command-line client of KVDB.
//
// It talks to one KVDB node over gRPC (KVService and AdminService, see
// api/proto/kvdb/v1) and offers two ways in:
//
//   - subcommands for scripts and one-off calls:
//     get, put, delete, range, batch, stats and status;
//   - an interactive shell (the REPL) when no subcommand is given, speaking
//     the README's line commands: GET, PUT, DELETE, RANGE, BATCH, STATS,
//     STATUS, HELP, QUIT/EXIT.
//
// Connection settings come from global flags: --address (falling back to the
// KVDB_ADDRESS environment variable, then localhost:8080; a missing port is
// 8080) or --endpoints a,b,c (the node among them that leads), --timeout (per
// request), -o/--output (text or json) and --consistency (l: linearizable,
// s: serializable reads). The README documents Go-style single-dash flags
// (kvdbctl -address localhost:8080); those are rewritten to their
// double-dash form before cobra parses them, so both spellings work.
//
// Exit status: 0 on success, 1 on any failure. `get` of a missing key prints
// "key not found" on stderr and exits 1. Fed commands on a non-terminal
// stdin, the REPL runs them all and exits 1 at EOF if any of them failed, so
// scripts notice.
package main
