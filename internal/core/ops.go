package core

import "time"

// Op names one client operation: the one table of names STATS, the
// kvdb_operation_duration_seconds metric and every transport share.
type Op uint8

// The operations, in the order STATS lists nothing in particular.
const (
	OpGet Op = iota + 1
	OpPut
	OpDelete
	OpRange
	OpBatch
	OpBegin
	OpTxnGet
	OpTxnRange
	OpTxnPut
	OpTxnDelete
	OpCommit
	OpRollback
	OpExecute
	// OpRMW is a read-modify-write (IncrBy, IncrByFloat, Append, SetRange,
	// Rename).
	OpRMW
	numOps
)

var opNames = [numOps]string{
	OpGet: "GET", OpPut: "PUT", OpDelete: "DELETE", OpRange: "RANGE", OpBatch: "BATCH",
	OpBegin: "BEGIN", OpTxnGet: "TXN_GET", OpTxnRange: "TXN_RANGE", OpTxnPut: "TXN_PUT",
	OpTxnDelete: "TXN_DELETE", OpCommit: "COMMIT", OpRollback: "ROLLBACK", OpExecute: "EXECUTE",
	OpRMW: "RMW",
}

// String is the operation's STATS name (GET, PUT, COMMIT, ...).
func (o Op) String() string {
	if o == 0 || o >= numOps {
		return "UNKNOWN"
	}
	return opNames[o]
}

// Ops lists every operation.
func Ops() []Op {
	out := make([]Op, 0, numOps-1)
	for o := OpGet; o < numOps; o++ {
		out = append(out, o)
	}
	return out
}

// Protocol names the transport an operation arrived on.
type Protocol string

// The transports.
const (
	GRPC   Protocol = "grpc"
	Binary Protocol = "binary"
	RESP   Protocol = "resp"
)

// Observer records the latency of each finished operation (STATS and the
// Prometheus histogram read the same recorder).
type Observer interface {
	Observe(p Protocol, op Op, d time.Duration)
}
