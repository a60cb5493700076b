package core

import (
	"context"
	"errors"
	"fmt"

	"github.com/kvdb/kvdb/internal/auth"
	"github.com/kvdb/kvdb/internal/command"
	"github.com/kvdb/kvdb/internal/engine"
	"github.com/kvdb/kvdb/internal/raftnode"
	"github.com/kvdb/kvdb/internal/raftnode/snap"
	"github.com/kvdb/kvdb/internal/raftnode/wal"
)

// Code classifies an error for every transport. The numbers are gRPC's
// status codes, which the binary protocol also sends as its status byte
// (docs/protocol.md), so each adapter converts with a plain cast.
type Code uint8

// The codes operations return.
const (
	OK                 Code = 0
	Canceled           Code = 1
	Unknown            Code = 2
	InvalidArgument    Code = 3
	DeadlineExceeded   Code = 4
	NotFound           Code = 5
	AlreadyExists      Code = 6
	PermissionDenied   Code = 7
	ResourceExhausted  Code = 8
	FailedPrecondition Code = 9
	Aborted            Code = 10
	OutOfRange         Code = 11
	Unimplemented      Code = 12
	Internal           Code = 13
	Unavailable        Code = 14
	DataLoss           Code = 15
	Unauthenticated    Code = 16
)

// The sentinel errors keep the "service: " prefix their texts have always
// had: clients and docs/protocol.md's examples show them as they are.

// Error is an error with its code; the message is what the client reads,
// so it carries no package prefix.
type Error struct {
	Code Code
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Is lets errors.Is(err, ErrInvalidArgument) match every invalid-argument
// Error.
func (e *Error) Is(target error) bool {
	return target == ErrInvalidArgument && e.Code == InvalidArgument
}

// Errorf returns an *Error with code c.
func Errorf(c Code, format string, args ...any) error {
	return &Error{Code: c, Msg: fmt.Sprintf(format, args...)}
}

func invalidf(format string, args ...any) error {
	return &Error{Code: InvalidArgument, Msg: fmt.Sprintf(format, args...)}
}

var (
	// ErrKeyNotFound is returned by Get for a missing key.
	ErrKeyNotFound = errors.New("service: key not found")
	// ErrInvalidArgument matches every validation failure.
	ErrInvalidArgument = errors.New("service: invalid argument")
	// ErrMemoryLimit rejects a write that would pass max-memory (policy
	// noeviction, or eviction not keeping up).
	ErrMemoryLimit = errors.New("service: memory limit reached")
	// ErrOverloaded answers a request that arrived while the node was
	// already serving its cap of requests: RESOURCE_EXHAUSTED, sent at once,
	// so a client under overload learns to back off in microseconds instead
	// of queueing until its deadline and the node's memory stays bounded.
	ErrOverloaded = errors.New("service: too many requests in flight, retry later")
	// ErrShuttingDown answers requests that arrive while the node drains.
	ErrShuttingDown = errors.New("node is shutting down")
	// ErrTxnConflict is a commit refused because a read changed: retry the
	// whole transaction.
	ErrTxnConflict = errors.New("service: transaction conflict")
	// ErrTxnNotFound names a transaction this node does not know (never
	// begun here, already committed or rolled back).
	ErrTxnNotFound = errors.New("service: transaction not found")
	// ErrTxnExpired names a transaction dropped after the idle timeout.
	ErrTxnExpired = errors.New("service: transaction expired")
	// ErrTxnExists is a Begin with an id already in use.
	ErrTxnExists = errors.New("service: transaction already exists")
	// ErrTooManyTxns is a Begin over the max-txns limit.
	ErrTooManyTxns = errors.New("service: too many open transactions")
)

// errorCodes is the one table from errors to codes. The first entry that
// matches with errors.Is wins.
var errorCodes = []struct {
	err  error
	code Code
}{
	{ErrKeyNotFound, NotFound},
	{ErrTxnConflict, Aborted},
	{ErrTxnNotFound, NotFound},
	{ErrTxnExpired, FailedPrecondition},
	{ErrTxnExists, AlreadyExists},
	{ErrTooManyTxns, ResourceExhausted},
	{ErrOverloaded, ResourceExhausted},
	{ErrMemoryLimit, ResourceExhausted},
	{ErrShuttingDown, Unavailable},
	{ErrUnauthenticated, Unauthenticated},
	{ErrPermissionDenied, PermissionDenied},
	{auth.ErrAuthFailed, Unauthenticated},
	{auth.ErrInvalidToken, Unauthenticated},
	{auth.ErrTooManyFailures, ResourceExhausted},
	{auth.ErrUserExists, AlreadyExists},
	{auth.ErrRoleExists, AlreadyExists},
	{auth.ErrUserNotFound, NotFound},
	{auth.ErrRoleNotFound, NotFound},
	{auth.ErrPermNotFound, NotFound},
	{auth.ErrRootRequired, FailedPrecondition},
	{auth.ErrInvalid, InvalidArgument},
	{auth.ErrOldRevision, Aborted},
	{ErrInvalidArgument, InvalidArgument},
	{command.ErrInvalid, InvalidArgument},
	{engine.ErrCorruptSnapshot, DataLoss},
	{wal.ErrCorrupt, DataLoss},
	{snap.ErrCorrupt, DataLoss},
	{raftnode.ErrOverloaded, ResourceExhausted},
	{raftnode.ErrNoSpace, ResourceExhausted},
	{wal.ErrNoSpace, ResourceExhausted},
	{raftnode.ErrProposalDropped, Unavailable},
	{raftnode.ErrNoLeader, Unavailable},
	{raftnode.ErrLeaderChanged, Unavailable},
	{raftnode.ErrStopped, Unavailable},
	{raftnode.ErrRemoved, FailedPrecondition},
	{raftnode.ErrNotLeader, FailedPrecondition},
	{raftnode.ErrConfChangeInProgress, FailedPrecondition},
	{raftnode.ErrWouldLoseQuorum, FailedPrecondition},
	{raftnode.ErrUnreachable, FailedPrecondition},
	{raftnode.ErrUnknownMember, NotFound},
	{raftnode.ErrMemberExists, AlreadyExists},
	{context.DeadlineExceeded, DeadlineExceeded},
	{context.Canceled, Canceled},
}

// CodeOf classifies err; errors the table does not know are Internal.
func CodeOf(err error) Code {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	return Internal
}
