package bench

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// KV is one put of a batch.
type KV struct{ Key, Value []byte }

// Driver is a database under load. Implementations must be safe for
// concurrent use; the byte slices passed in are owned by the caller and not
// modified while a call runs.
type Driver interface {
	Get(ctx context.Context, key []byte) error // a missing key is an error
	Put(ctx context.Context, key, value []byte) error
	Delete(ctx context.Context, key []byte) error
	// Batch writes every pair atomically.
	Batch(ctx context.Context, kvs []KV) error
	// Txn reads readKey and writes value to writeKey in one transaction.
	Txn(ctx context.Context, readKey, writeKey, value []byte) error
	Close() error
}

// Pipeliner is a Driver that can keep several requests of one worker in
// flight on one connection.
type Pipeliner interface {
	// Pipeline returns a Pipe for one worker.
	Pipeline() Pipe
}

// Pipe sends a worker's window of requests together: they are queued until
// Flush. The returned Waiter waits for the reply; it is waited for exactly
// once, after Flush.
type Pipe interface {
	GetAsync(ctx context.Context, key []byte) Waiter
	PutAsync(ctx context.Context, key, value []byte) Waiter
	DeleteAsync(ctx context.Context, key []byte) Waiter
	Flush()
}

// Waiter is a pipelined request in flight.
type Waiter interface {
	Wait(ctx context.Context) error
}

// Code is the gRPC status code of err: what the errors of a run are grouped
// by. Errors without one are UNKNOWN; context errors map to theirs.
func Code(err error) codes.Code {
	switch {
	case err == nil:
		return codes.OK
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		if st := se.GRPCStatus(); st != nil {
			return st.Code()
		}
	}
	return status.Code(err)
}
