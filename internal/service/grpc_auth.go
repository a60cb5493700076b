package service

import (
	"context"
	"net"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/kvdb/kvdb/internal/core"
)

// Who may call what over gRPC while authentication is enabled. Every method
// the server registers is in one class (TestEveryRPCIsChecked enumerates
// them through reflection); a method in none is refused to all but root.
type rpcClass uint8

const (
	// rpcOpen needs no identity: authenticating, health, reflection.
	rpcOpen rpcClass = iota + 1
	// rpcData is a key-value or transaction call: core checks the
	// caller's permission on every key it touches.
	rpcData
	// rpcRoot needs the root role: administration and auth management.
	rpcRoot
	// rpcUser needs an authenticated user: what clients read to find the
	// leader (Status, MemberList).
	rpcUser
)

// rpcClasses maps a full method name, or a service prefix ending in "/",
// to its class.
var rpcClasses = map[string]rpcClass{
	"/kvdb.v1.AuthService/Authenticate":          rpcOpen,
	"/grpc.health.v1.Health/":                    rpcOpen,
	"/grpc.reflection.v1.ServerReflection/":      rpcOpen,
	"/grpc.reflection.v1alpha.ServerReflection/": rpcOpen,
	// Peer traffic is authenticated by the peer transport (mTLS or the
	// cluster secret), not by user tokens.
	"/kvdb.raft.v1.RaftService/":       rpcOpen,
	"/kvdb.v1.KVService/":              rpcData,
	"/kvdb.v1.TxnService/":             rpcData,
	"/kvdb.v1.WatchService/":           rpcData,
	"/kvdb.v1.AdminService/Status":     rpcUser,
	"/kvdb.v1.AdminService/MemberList": rpcUser,
	"/kvdb.v1.AdminService/":           rpcRoot,
	// Leases: any authenticated user (etcd's rule); core checks write
	// permission on every key a revoke deletes or a put attaches.
	"/kvdb.v1.LeaseService/": rpcUser,
	"/kvdb.v1.AuthService/":  rpcRoot,
}

func classOf(method string) (rpcClass, bool) {
	if c, ok := rpcClasses[method]; ok {
		return c, true
	}
	if i := strings.LastIndexByte(method, '/'); i > 0 {
		c, ok := rpcClasses[method[:i+1]]
		return c, ok
	}
	return 0, false
}

// tokenMetadata is the metadata key a token travels in (etcd's name).
const tokenMetadata = "token"

// identify verifies the call's token, if any, and returns ctx carrying its
// user; then it applies the method's class. A bad token is refused even on
// open methods, so a client learns at once that it must authenticate again.
// It looks at the call's headers only: tapHandle runs it before the
// request is read. open reports a call that needs no identity and proved
// none.
func (s *Server) identify(ctx context.Context, method string) (_ context.Context, open bool, _ error) {
	class, known := classOf(method)
	if class == rpcOpen && method == "/kvdb.v1.AuthService/Authenticate" {
		return ctx, true, nil
	}
	// ValueFromIncomingContext copies the one value, where
	// FromIncomingContext would copy every header of the call.
	if toks := metadata.ValueFromIncomingContext(ctx, tokenMetadata); len(toks) > 0 && toks[0] != "" {
		user, err := s.core.VerifyToken(toks[0])
		if err != nil {
			if s.core.AuthEnabled() {
				return ctx, false, err
			}
		} else {
			ctx = core.WithUser(ctx, user)
			if class == rpcOpen {
				return ctx, false, nil
			}
		}
	}
	switch {
	case class == rpcOpen:
		return ctx, true, nil
	case class == rpcData, class == rpcUser:
		// Core checks a data call's permission on every key it touches;
		// here, before its request is read, only that it has a caller.
		return ctx, false, s.core.CheckAuthenticated(ctx)
	case class == rpcRoot, !known:
		return ctx, false, s.core.RequireRoot(ctx)
	}
	return ctx, false, nil
}

// DefaultMaxAnonymousCalls bounds the calls open at once, node-wide, that
// carry no identity while authentication is enabled: Authenticate, and
// health and reflection calls without a token (-max-anonymous-calls). They
// are the only calls whose requests the node reads from callers it does
// not know, so this bound, times what one request of up to twice
// -max-request-size costs to receive and decode (a few times its size),
// bounds what such callers can make it hold. Past it they are refused with
// RESOURCE_EXHAUSTED from their headers. Authenticate hashes a password,
// so a few dozen at once already keep the processors busy.
const DefaultMaxAnonymousCalls = 32

// admitAnonymous counts an anonymous call until it ends (its context is
// cancelled then), or refuses it when the node is at the bound.
func (s *Server) admitAnonymous(ctx context.Context) error {
	limit := int64(s.cfg.MaxAnonymousCalls)
	if limit < 0 {
		return nil
	}
	if s.anonCalls.Add(1) > limit {
		s.anonCalls.Add(-1)
		return errAnonymousBusy
	}
	context.AfterFunc(ctx, func() { s.anonCalls.Add(-1) })
	return nil
}

var errAnonymousBusy = status.Error(codes.ResourceExhausted,
	"too many unauthenticated calls in progress on this node (Authenticate, health, reflection); retry, or call with a token")

// tapHandle runs when a call's headers arrive, before any of its message
// is read (grpc.InTapHandle): a call its headers do not authorise is
// refused without the server reading or buffering its request. Client
// calls are identified by their token (identify); the context it returns,
// carrying the caller, is the call's. RaftService calls on the client
// port must authenticate as a peer from their headers.
func (s *Server) tapHandle(ctx context.Context, info *tap.Info) (context.Context, error) {
	if isPeerMethod(info.FullMethodName) {
		if s.servesPeersOnClientPort() {
			return s.transport.AuthorizeHeaders(ctx)
		}
		return ctx, nil // not served here: Unimplemented
	}
	ctx, open, err := s.identify(ctx, info.FullMethodName)
	if err != nil {
		return ctx, toStatus(err)
	}
	if open && s.core.AuthEnabled() {
		return ctx, s.admitAnonymous(ctx)
	}
	return ctx, nil
}

// hostOf is the host part of a host:port address.
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
