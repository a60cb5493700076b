package service

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvdb/kvdb/internal/engine"
	"github.com/kvdb/kvdb/internal/raftnode"
	"github.com/kvdb/kvdb/internal/raftnode/snap"
	"github.com/kvdb/kvdb/internal/raftnode/wal"
	"github.com/kvdb/kvdb/internal/wire"
)

var (
	// ErrKeyNotFound is returned by Get for a missing key.
	ErrKeyNotFound = errors.New("service: key not found")
	// ErrInvalidArgument wraps every validation failure.
	ErrInvalidArgument = errors.New("service: invalid argument")
	// ErrMemoryLimit rejects a write that would pass max-memory (policy
	// noeviction, or eviction not keeping up).
	ErrMemoryLimit = errors.New("service: memory limit reached")
)

// invalidError is a validation failure; its text is what the client reads,
// so it carries no package prefix.
type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalidArgument }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// errorCodes is the one table from package errors to gRPC codes. The first
// entry that matches with errors.Is wins.
var errorCodes = []struct {
	err  error
	code codes.Code
}{
	{ErrKeyNotFound, codes.NotFound},
	{ErrTxnConflict, codes.Aborted},
	{ErrTxnNotFound, codes.NotFound},
	{ErrTxnExpired, codes.FailedPrecondition},
	{ErrTxnExists, codes.AlreadyExists},
	{ErrTooManyTxns, codes.ResourceExhausted},
	{ErrOverloaded, codes.ResourceExhausted},
	{ErrMemoryLimit, codes.ResourceExhausted},
	{ErrInvalidArgument, codes.InvalidArgument},
	{engine.ErrCorruptSnapshot, codes.DataLoss},
	{wal.ErrCorrupt, codes.DataLoss},
	{snap.ErrCorrupt, codes.DataLoss},
	{raftnode.ErrOverloaded, codes.ResourceExhausted},
	{raftnode.ErrNoSpace, codes.ResourceExhausted},
	{wal.ErrNoSpace, codes.ResourceExhausted},
	{raftnode.ErrProposalDropped, codes.Unavailable},
	{raftnode.ErrNoLeader, codes.Unavailable},
	{raftnode.ErrLeaderChanged, codes.Unavailable},
	{raftnode.ErrStopped, codes.Unavailable},
	{raftnode.ErrRemoved, codes.FailedPrecondition},
	{raftnode.ErrNotLeader, codes.FailedPrecondition},
	{raftnode.ErrConfChangeInProgress, codes.FailedPrecondition},
	{raftnode.ErrWouldLoseQuorum, codes.FailedPrecondition},
	{raftnode.ErrUnknownMember, codes.NotFound},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
}

// Code maps an error to its gRPC code.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	return codes.Internal
}

// toStatus converts a package error into the gRPC status a client sees.
// Messages lose the internal "service: " prefixes only where they would
// confuse a user; the text otherwise stays as written.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(Code(err), err.Error())
}

// WireStatus maps an error to the binary protocol's status byte through the
// same table: the byte is the gRPC code's number (docs/protocol.md).
func WireStatus(err error) wire.Status {
	return wire.Status(Code(err))
}

// errorMessage is the text a client reads for err on either transport.
func errorMessage(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Message()
	}
	return err.Error()
}
