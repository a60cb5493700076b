package main

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/status"
)

// errKeyNotFound is what a NOT_FOUND from Get becomes. It is a sentinel
// because its presentation differs by caller: the get subcommand prints
// "key not found" on stderr, the REPL prints "(nil)".
var errKeyNotFound = errors.New("key not found")

// unreachableError says the server at address could not be reached at all,
// as opposed to the server answering with an error.
type unreachableError struct {
	address string
	err     error
}

func (e *unreachableError) Error() string {
	msg := e.err.Error()
	if st, ok := grpcStatus(e.err); ok {
		msg = st.Message()
	}
	return fmt.Sprintf("cannot reach KVDB server at %s: %s", e.address, msg)
}

func (e *unreachableError) Unwrap() error { return e.err }

// usageError marks mistakes in the command line itself, for which run()
// adds a pointer to --help.
type usageError struct {
	err error
}

func (e *usageError) Error() string { return e.err.Error() }

func (e *usageError) Unwrap() error { return e.err }

// scriptError reports that a non-interactive REPL session had failures; each
// failure was already printed as "(error) ..." when it happened.
type scriptError struct {
	failed, total int
}

func (e *scriptError) Error() string {
	return fmt.Sprintf("%d of %d commands failed", e.failed, e.total)
}

// grpcStatus finds a gRPC status anywhere in err's chain. status.FromError
// also unwraps, but then replaces the message with the whole wrapped text;
// we want the server's own message.
func grpcStatus(err error) (*status.Status, bool) {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		if st := se.GRPCStatus(); st != nil {
			return st, true
		}
	}
	return nil, false
}

// describeError renders err for humans: "<grpc message> (<code>)" for server
// errors, a sentence naming the address for an unreachable server, the
// plain text otherwise. The CLI prefixes it with "Error: ", the REPL with
// "(error) ".
func describeError(err error) string {
	var msg string
	var ue *unreachableError
	if errors.As(err, &ue) {
		msg = ue.Error()
	} else if st, ok := grpcStatus(err); ok {
		msg = fmt.Sprintf("%s (%s)", st.Message(), st.Code())
	} else {
		msg = err.Error()
	}
	// gRPC's words when the port speaks another protocol (a Redis-protocol
	// port, an HTTP server) are about HTTP/2 frames; say what they mean.
	if strings.Contains(msg, "server preface") {
		msg += " (the server at that address does not speak gRPC: is it a KVDB node's -address, not its -resp-address or another service?)"
	}
	return msg
}
