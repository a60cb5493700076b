package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	kvclient "github.com/kvdb/kvdb/client"
	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// client is a connection to one KVDB node with its service stubs. With
// --protocol binary the KV calls go through the public client package over
// the binary protocol; admin calls (status, stats) always use gRPC on the
// same port.
type client struct {
	address string
	conn    *grpc.ClientConn
	kv      kvdbv1.KVServiceClient
	admin   kvdbv1.AdminServiceClient
	txn     kvdbv1.TxnServiceClient
	binary  *kvclient.Client // set for --protocol binary
}

// dial prepares a connection. grpc.NewClient does not connect yet, so an
// unreachable server shows up on the first RPC, where check() names it. The
// binary protocol connects at once and reports an unreachable server here.
func dial(address string, protocol kvclient.Protocol, tlsCfg *tls.Config, user, password string) (*client, error) {
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if user != "" {
		unary, stream := kvclient.AuthInterceptors(user, password)
		opts = append(opts, grpc.WithChainUnaryInterceptor(unary), grpc.WithChainStreamInterceptor(stream))
	}
	conn, err := grpc.NewClient(kvclient.Target(dialTarget(address)), opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", address, err)
	}
	c := &client{
		address: address,
		conn:    conn,
		kv:      kvdbv1.NewKVServiceClient(conn),
		admin:   kvdbv1.NewAdminServiceClient(conn),
		txn:     kvdbv1.NewTxnServiceClient(conn),
	}
	if protocol == kvclient.ProtocolBinary {
		b, err := kvclient.New(context.Background(), kvclient.Options{Endpoints: []string{dialTarget(address)}, Protocol: protocol, PoolSize: 1, TLS: tlsCfg, Username: user, Password: password})
		if err != nil {
			conn.Close()
			if c := kvclient.Code(err); c == codes.Unauthenticated || c == codes.PermissionDenied || c == codes.ResourceExhausted {
				return nil, err // the server answered: it is reachable
			}
			return nil, &unreachableError{address: address, err: err}
		}
		c.binary, c.kv = b, b.KVService()
	}
	return c, nil
}

// dialTarget turns a listen-style address (":8080", as the server's -address
// flag and the STATS "address" field spell it) into something dialable.
func dialTarget(address string) string {
	if strings.HasPrefix(address, ":") {
		return "localhost" + address
	}
	return address
}

func (c *client) close() error {
	if c.binary != nil {
		_ = c.binary.Close()
	}
	return c.conn.Close()
}

// check tells "the server said no" apart from "there is no server". An
// Unavailable or DeadlineExceeded error while the connection is not READY
// means we never got through, and the user needs to hear which address was
// tried; the same codes on a READY connection come from the server (for
// example a node without a leader) and are passed through as is.
func (c *client) check(err error) error {
	if err == nil {
		return nil
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		if !c.ready() {
			return &unreachableError{address: c.address, err: err}
		}
	}
	return err
}

// readyWait bounds how long ready waits for the connection's state to
// catch up with an RPC that went through.
const readyWait = 200 * time.Millisecond

// ready reports whether the connection is READY. gRPC publishes the state
// after the connection can already carry RPCs, so right after the first
// RPC it may still say CONNECTING: ready waits a moment for it to settle
// before it says no.
func (c *client) ready() bool {
	ctx, cancel := context.WithTimeout(context.Background(), readyWait)
	defer cancel()
	for {
		st := c.conn.GetState()
		if st == connectivity.Ready {
			return true
		}
		if st == connectivity.TransientFailure || st == connectivity.Shutdown || !c.conn.WaitForStateChange(ctx, st) {
			return false
		}
	}
}

// invoke runs one RPC with the per-request timeout and classifies its error.
// It is generic so every command gets the same connection, timeout and error
// handling without repeating it.
func invoke[T any](ctx context.Context, a *app, rpc func(context.Context, *client) (T, error)) (T, error) {
	var zero T
	c, err := a.client()
	if err != nil {
		return zero, err
	}
	if a.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.timeout)
		defer cancel()
	}
	resp, err := rpc(ctx, c)
	if err != nil {
		return zero, c.check(err)
	}
	return resp, nil
}

// parseConsistency maps the --consistency flag to the proto enum. The long
// names are accepted too because they are what a user guesses first.
func parseConsistency(s string) (kvdbv1.Consistency, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "l", "linearizable":
		return kvdbv1.Consistency_CONSISTENCY_LINEARIZABLE, nil
	case "s", "serializable":
		return kvdbv1.Consistency_CONSISTENCY_SERIALIZABLE, nil
	default:
		return 0, fmt.Errorf("invalid --consistency %q: want l (linearizable) or s (serializable)", s)
	}
}
