// Package service is a KVDB node as clients and operators reach it: it
// assembles the engine, the raft node (with the state machine of package
// fsm) and the operation layer (package core), and serves them on one port,
// where a sniffer splits gRPC, HTTP (/metrics, /healthz, /readyz) and the
// binary protocol.
//
// The protocol adapters live here and only translate:
//   - gRPC: kv.go (KVService), txn_service.go (TxnService) and admin.go
//     (AdminService: status, STATS, membership, leadership);
//   - the binary protocol: binary.go (listener and limits), binary_conn.go
//     (one connection's read and write loops), binary_ops.go and
//     binary_txn.go (requests to core calls, results to frames).
//
// What a request means (validation, limits, admission, proposing, reading,
// transactions, error codes, operation names) is core's; errors.go maps
// core's codes to gRPC statuses and binary status bytes. Metrics and STATS
// (metrics.go, opstats.go, stats_json.go) read the same instruments.
// docs/architecture.md describes the layers and one request's path.
//
// All exported types are safe for concurrent use unless stated otherwise.
package service
