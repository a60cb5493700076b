package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

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
	// port, an HTTP server, a TLS-only node reached without TLS) are about
	// HTTP/2 frames; say what they mean. The binary protocol's handshake
	// with a TLS-only node fails likewise.
	if strings.Contains(msg, "server preface") || strings.Contains(msg, "binary handshake") {
		switch {
		case ue != nil && anySpeaksTLS(ue.address):
			msg += " (the server at that address speaks TLS: pass --cacert with the CA that signed its certificate, and --cert and --key when it requires client certificates)"
		case strings.Contains(msg, "server preface"):
			msg += " (the server at that address does not speak gRPC: is it a KVDB node's -address, not its -resp-address or another service?)"
		}
	}
	return msg
}

// tlsProbeTimeout bounds each TLS probe of anySpeaksTLS.
const tlsProbeTimeout = 2 * time.Second

// anySpeaksTLS reports whether a server among addresses (comma-separated)
// answers a TLS handshake: after a plaintext connection failed, it tells a
// TLS-only node apart from a port that speaks another protocol.
func anySpeaksTLS(addresses string) bool {
	for addr := range strings.SplitSeq(addresses, ",") {
		if a, err := normalizeAddress(addr); err == nil && speaksTLS(a) {
			return true
		}
	}
	return false
}

// speaksTLS reports whether the server at address answers a TLS
// ClientHello with a handshake (completed, or ended by a TLS alert such as
// "certificate required"). The probe only looks at the protocol: it trusts
// nothing it is shown, sends no request and closes at once.
func speaksTLS(address string) bool {
	d := &net.Dialer{Timeout: tlsProbeTimeout} // bounds the handshake too
	conn, err := tls.DialWithDialer(d, "tcp", address, &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // a protocol probe: no data is exchanged
		MinVersion:         tls.VersionTLS12,
	})
	if err == nil {
		_ = conn.Close()
		return true
	}
	var alert tls.AlertError
	var verify *tls.CertificateVerificationError
	return errors.As(err, &alert) || errors.As(err, &verify)
}
