package client

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvdb/kvdb/internal/wire"
)

// Error is a request the server answered with a status other than OK. Code
// uses the numbers of gRPC codes on both transports.
type Error struct {
	Code    codes.Code
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("kvdb: %s: %s", e.Code, e.Message) }

// GRPCStatus lets status.FromError and status.Code read an Error.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// ErrNotFound is matched by errors.Is for a NOT_FOUND answer.
var ErrNotFound = &Error{Code: codes.NotFound, Message: "key not found"}

// Is makes errors.Is(err, ErrNotFound) true for every NOT_FOUND answer and
// errors.Is(err, ErrAborted) for every ABORTED one.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && (t == ErrNotFound && e.Code == codes.NotFound || t == ErrAborted && e.Code == codes.Aborted)
}

// ErrClosed is returned by calls on a closed Client or a broken connection.
var ErrClosed = errors.New("kvdb: connection closed")

func wireError(st wire.Status, msg []byte) error {
	return &Error{Code: codes.Code(st), Message: string(msg)}
}

// Code returns the status code of err (codes.OK for nil, codes.Unknown for
// errors that carry none).
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if errors.Is(err, ErrClosed) {
		return codes.Unavailable
	}
	return status.Code(err)
}

// retryable reports whether a failed idempotent request may be sent again.
func retryable(err error) bool {
	return Code(err) == codes.Unavailable
}

// oldAuthRevisionText is in the message of the ABORTED answer to a request
// refused when applied because the users, roles or permissions changed
// after it was checked (the server's auth.ErrOldRevision).
const oldAuthRevisionText = "the users, roles or permissions changed while the request was in flight"

// notApplied reports whether err says the request was refused as a whole
// before it changed anything, so any request, a write too, may be sent
// again: the server checks it afresh against the new permissions.
func notApplied(err error) bool {
	st := status.Convert(err) // *Error carries a status too (GRPCStatus)
	return st.Code() == codes.Aborted && strings.Contains(st.Message(), oldAuthRevisionText)
}
