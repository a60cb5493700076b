// Package service is the RPC face of a KVDB node: the gRPC KVService and
// AdminService handlers, the state-machine adapter that turns committed raft
// entries into engine operations, the single table that maps errors to gRPC
// codes, and the listener that serves gRPC and HTTP on one port.
//
// Handlers are thin: validate against Limits, encode a command, hand it to
// raftnode.Propose (writes) or wait on raftnode.ReadIndex (linearizable
// reads), and build the response. They never touch the engine's write side;
// only the fsm, driven by the raft apply loop, does.
//
// All exported types are safe for concurrent use unless stated otherwise.
package service
