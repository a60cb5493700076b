package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/wire"
)

// dialer holds what every connection of a Client is made with: TLS and,
// when a user is set, the credentials it authenticates with.
type dialer struct {
	tls            *tls.Config
	user, password string
	tokens         *tokenSource
}

func newDialer(o *Options) *dialer {
	d := &dialer{tls: o.TLS, user: o.Username, password: o.Password}
	if d.user != "" {
		d.tokens = &tokenSource{user: o.Username, password: o.Password}
	}
	return d
}

const authenticateMethod = "/kvdb.v1.AuthService/Authenticate"

// tokenRefresh is how long a token is used before the client asks for a
// new one; well inside the server's default token lifetime (5 minutes).
const tokenRefresh = time.Minute

// tokenSource authenticates over gRPC once and reuses the token, renewing
// it when it is old or the server refuses it (expired, password changed).
// One authentication runs at a time, on a context of its own (a password
// check is deliberately slow, and a short call deadline must not abandon
// it half way): concurrent callers wait for it, each up to its own
// deadline.
type tokenSource struct {
	user, password string
	mu             sync.Mutex
	token          string
	at             time.Time
	disabled       bool          // the server said authentication is off
	fetching       chan struct{} // closed when the running fetch ends
	lastErr        error
}

// authTimeout bounds one Authenticate call.
const authTimeout = 30 * time.Second

func (ts *tokenSource) get(ctx context.Context, cc *grpc.ClientConn) (string, error) {
	for {
		ts.mu.Lock()
		if time.Since(ts.at) < tokenRefresh && (ts.token != "" || ts.disabled) {
			tok := ts.token
			ts.mu.Unlock()
			return tok, nil
		}
		wait := ts.fetching
		if wait == nil {
			wait = make(chan struct{})
			ts.fetching = wait
			go ts.fetch(cc, wait)
		}
		ts.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return "", ctx.Err()
		}
		ts.mu.Lock()
		err := ts.lastErr
		fresh := time.Since(ts.at) < tokenRefresh
		ts.mu.Unlock()
		if err != nil {
			return "", err
		}
		if !fresh {
			continue
		}
	}
}

// fetch runs one Authenticate and publishes its outcome.
func (ts *tokenSource) fetch(cc *grpc.ClientConn, done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), authTimeout)
	defer cancel()
	resp, err := kvdbv1.NewAuthServiceClient(cc).Authenticate(ctx, &kvdbv1.AuthenticateRequest{Name: ts.user, Password: ts.password})
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.lastErr = nil
	switch {
	case status.Code(err) == codes.FailedPrecondition:
		ts.token, ts.disabled, ts.at = "", true, time.Now()
	case err != nil:
		ts.lastErr = err
	default:
		ts.token, ts.disabled, ts.at = resp.GetToken(), false, time.Now()
	}
	ts.fetching = nil
	close(done)
}

func (ts *tokenSource) invalidate(token string) {
	ts.mu.Lock()
	if ts.token == token {
		ts.at = time.Time{}
	}
	ts.mu.Unlock()
}

// unary adds the token to every call but Authenticate, and retries a call
// refused as UNAUTHENTICATED once with a fresh token.
func (ts *tokenSource) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if method == authenticateMethod {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	call := func() (tok string, sent bool, err error) {
		if tok, err = ts.get(ctx, cc); err != nil {
			return "", false, err
		}
		cctx := ctx
		if tok != "" {
			cctx = metadata.AppendToOutgoingContext(ctx, "token", tok)
		}
		return tok, true, invoker(cctx, method, req, reply, cc, opts...)
	}
	tok, sent, err := call()
	if sent && status.Code(err) == codes.Unauthenticated {
		// The token expired or the password changed: one fresh token.
		ts.invalidate(tok)
		_, _, err = call()
	}
	return err
}

// authenticateBinary authenticates a fresh binary-protocol connection:
// with the client's token when one can be had over gRPC (one password
// check per client, not one per connection), else with the password.
func (d *dialer) authenticateBinary(ctx context.Context, c net.Conn, addr string) error {
	if g, err := dialGRPC(addr, d); err == nil {
		tok, terr := d.tokens.get(ctx, g.conn)
		g.conn.Close()
		switch {
		case terr == nil && tok == "":
			return nil // authentication is off
		case terr == nil:
			if err := sendAuth(c, "", tok); err == nil {
				return nil
			}
			d.tokens.invalidate(tok)
		}
	}
	return sendAuth(c, d.user, d.password)
}

// sendAuth sends AUTH on a fresh binary-protocol connection and reads the
// answer before the connection's reader starts. A server with
// authentication disabled answers FAILED_PRECONDITION, which is fine.
func sendAuth(c net.Conn, user, password string) error {
	if _, err := c.Write(wire.AppendRequest(nil, &wire.Request{Op: wire.OpAuth, ID: 1, Key: []byte(user), Value: []byte(password)})); err != nil {
		return err
	}
	rd := wire.NewReader(c, 4096, wire.MaxResponseFrameSize)
	f, err := rd.Next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("connection closed during AUTH")
		}
		return err
	}
	if rd.Buffered() != 0 {
		return fmt.Errorf("unexpected frames after the AUTH reply")
	}
	var resp wire.Response
	if err := wire.DecodeResponse(f, &resp); err != nil {
		return err
	}
	switch resp.Status {
	case wire.StatusOK, wire.StatusFailedPrecondition:
		return nil
	}
	return &Error{Code: codes.Code(resp.Status), Message: string(resp.Payload)}
}

// stream adds the token to a streaming call (LeaseKeepAlive).
func (ts *tokenSource) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	tok, err := ts.get(ctx, cc)
	if err != nil {
		return nil, err
	}
	if tok != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "token", tok)
	}
	return streamer(ctx, desc, cc, method, opts...)
}

// AuthInterceptors is AuthInterceptor for unary and streaming calls,
// sharing one token.
func AuthInterceptors(user, password string) (grpc.UnaryClientInterceptor, grpc.StreamClientInterceptor) {
	ts := &tokenSource{user: user, password: password}
	return ts.unary, ts.stream
}

// AuthInterceptor returns a gRPC client interceptor that authenticates as
// user on the connection it is installed on and sends the token with every
// call (renewing it as needed), for programs that use the generated gRPC
// stubs directly, as kvdbctl's admin commands do.
func AuthInterceptor(user, password string) grpc.UnaryClientInterceptor {
	return (&tokenSource{user: user, password: password}).unary
}
