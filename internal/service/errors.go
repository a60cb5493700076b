package service

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvdb/kvdb/internal/core"
	"github.com/kvdb/kvdb/internal/wire"
)

// The errors clients see are core's; these names keep them reachable from
// this package's callers.
var (
	ErrKeyNotFound     = core.ErrKeyNotFound
	ErrInvalidArgument = core.ErrInvalidArgument
	ErrMemoryLimit     = core.ErrMemoryLimit
	ErrOverloaded      = core.ErrOverloaded
	ErrTxnConflict     = core.ErrTxnConflict
	ErrTxnNotFound     = core.ErrTxnNotFound
	ErrTxnExpired      = core.ErrTxnExpired
	ErrTxnExists       = core.ErrTxnExists
	ErrTooManyTxns     = core.ErrTooManyTxns
)

// Code maps an error to its gRPC code: a gRPC status keeps its own, every
// other error goes through core's one table (core.CodeOf), whose numbers
// are gRPC's.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	return codes.Code(core.CodeOf(err))
}

// toStatus converts an error into the gRPC status a client sees, with the
// error's text unchanged.
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
// same table: the byte is the code's number (docs/protocol.md).
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
