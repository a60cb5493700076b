package wire

import "fmt"

// Opcode names the operation of a frame. A response carries the opcode of
// the request it answers.
type Opcode uint8

// Opcodes. Values never change once released; new ones are appended.
const (
	OpError    Opcode = 0x00 // server only: a connection-level error before closing
	OpPing     Opcode = 0x01
	OpGet      Opcode = 0x02
	OpPut      Opcode = 0x03
	OpDelete   Opcode = 0x04
	OpRange    Opcode = 0x05
	OpBatch    Opcode = 0x06
	OpBegin    Opcode = 0x07
	OpCommit   Opcode = 0x08
	OpRollback Opcode = 0x09
	OpTxn      Opcode = 0x0A // one-shot conditional transaction (compare-and-swap)
	OpStats    Opcode = 0x0B
	OpAuth     Opcode = 0x0C // authenticate the connection as a user

	// LastOpcode is the highest request opcode this version defines.
	LastOpcode = OpAuth
)

// Valid reports whether op is a request opcode this version defines.
func (op Opcode) Valid() bool { return op >= OpPing && op <= LastOpcode }

func (op Opcode) String() string {
	switch op {
	case OpError:
		return "ERROR"
	case OpPing:
		return "PING"
	case OpGet:
		return "GET"
	case OpPut:
		return "PUT"
	case OpDelete:
		return "DELETE"
	case OpRange:
		return "RANGE"
	case OpBatch:
		return "BATCH"
	case OpBegin:
		return "BEGIN"
	case OpCommit:
		return "COMMIT"
	case OpRollback:
		return "ROLLBACK"
	case OpTxn:
		return "TXN"
	case OpStats:
		return "STATS"
	case OpAuth:
		return "AUTH"
	}
	return fmt.Sprintf("Opcode(0x%02x)", uint8(op))
}

// Request flags. A flag that means nothing to an opcode must be zero.
const (
	// FlagSerializable (GET, RANGE) reads the local store without confirming
	// leadership; the default is linearizable.
	FlagSerializable uint8 = 1 << 0
	// FlagPrevKV (PUT, DELETE) asks for the previous key-value(s).
	FlagPrevKV uint8 = 1 << 1
	// FlagPrefix (DELETE, RANGE) selects every key starting with the key.
	FlagPrefix uint8 = 1 << 2
	// FlagKeysOnly (RANGE) leaves values out.
	FlagKeysOnly uint8 = 1 << 3
	// FlagCountOnly (RANGE) returns only the count.
	FlagCountOnly uint8 = 1 << 4
	// FlagInTxn (GET, PUT, DELETE, RANGE) runs the operation inside the
	// connection's open transaction (see BEGIN).
	FlagInTxn uint8 = 1 << 7
)

// RequestFlags is the set of request flags op defines; any other bit in a
// request is answered INVALID_ARGUMENT.
func (op Opcode) RequestFlags() uint8 {
	switch op {
	case OpGet:
		return FlagSerializable | FlagInTxn
	case OpPut:
		return FlagPrevKV | FlagInTxn
	case OpDelete:
		return FlagPrevKV | FlagPrefix | FlagInTxn
	case OpRange:
		return FlagSerializable | FlagPrefix | FlagKeysOnly | FlagCountOnly | FlagInTxn
	}
	return 0
}

// Response flags.
const (
	// FlagHasPrevKV (PUT response) says a previous key-value follows.
	FlagHasPrevKV uint8 = 1 << 1
)

// Status is a response's outcome. The values are the gRPC status code
// numbers, so both transports share one table of meanings.
type Status uint8

// Statuses (same numbers as google.golang.org/grpc/codes).
const (
	StatusOK                 Status = 0
	StatusCanceled           Status = 1
	StatusUnknown            Status = 2
	StatusInvalidArgument    Status = 3
	StatusDeadlineExceeded   Status = 4
	StatusNotFound           Status = 5
	StatusAlreadyExists      Status = 6
	StatusPermissionDenied   Status = 7
	StatusResourceExhausted  Status = 8
	StatusFailedPrecondition Status = 9
	StatusAborted            Status = 10
	StatusOutOfRange         Status = 11
	StatusUnimplemented      Status = 12
	StatusInternal           Status = 13
	StatusUnavailable        Status = 14
	StatusDataLoss           Status = 15
	StatusUnauthenticated    Status = 16
)

var statusNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", uint8(s))
}
