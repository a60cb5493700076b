package raftnode

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// PeerSecurity says how a GRPCTransport authenticates its peers. With
// neither RequireCertificate nor Secret, any sender that is a current member
// by its own word is accepted: that is the -insecure-peers mode.
type PeerSecurity struct {
	// TLS, when set, is the client configuration for dialling peers: the
	// peer CA as RootCAs and, for mTLS, this member's certificate. The server
	// name is taken from each peer's address.
	TLS *tls.Config
	// RequireCertificate refuses every incoming stream that did not arrive
	// over TLS with a verified client certificate naming the sending member:
	// its CommonName or one of its DNS names equals the member's name
	// (-node-id).
	RequireCertificate bool
	// Secret is the shared cluster secret (-peer-secret-file). Each stream
	// carries a token derived from it, the sender, the receiver and the
	// cluster id; a stream without the right token is refused. The secret
	// itself never leaves the process.
	Secret []byte
}

// peerTokenKey is the gRPC metadata key of the peer token; peerFromKey
// names the sending member (hex), so a receiver can check the token from
// the headers alone, before it reads any message of the stream.
const (
	peerTokenKey = "kvdb-peer-token"
	peerFromKey  = "kvdb-peer-from"
)

// peerToken is HMAC-SHA256(secret, cluster|from|to): it proves knowledge of
// the secret for one sender and receiver without revealing the secret.
func peerToken(secret []byte, cluster, from, to uint64) []byte {
	mac := hmac.New(sha256.New, secret)
	var b [3 * 8]byte
	binary.BigEndian.PutUint64(b[0:], cluster)
	binary.BigEndian.PutUint64(b[8:], from)
	binary.BigEndian.PutUint64(b[16:], to)
	mac.Write([]byte("kvdb-peer-v1\x00"))
	mac.Write(b[:])
	return mac.Sum(nil)
}

// withToken adds this member's id and its token for peer to to an
// outgoing context.
func (t *GRPCTransport) withToken(ctx context.Context, host Host, to uint64) context.Context {
	from := strconv.FormatUint(host.ID(), 16)
	if len(t.sec.Secret) == 0 {
		return metadata.AppendToOutgoingContext(ctx, peerFromKey, from)
	}
	tok := peerToken(t.sec.Secret, host.ClusterID(), host.ID(), to)
	return metadata.AppendToOutgoingContext(ctx, peerFromKey, from, peerTokenKey, hex.EncodeToString(tok))
}

// errPeerRefused is the error a refused peer stream ends with. It says
// what was wrong, never what the secret or token should have been.
func errPeerRefused(format string, args ...any) error {
	return status.Errorf(codes.PermissionDenied, "raft peer refused: "+format, args...)
}

// authorize checks, once per incoming stream, that from may send this node
// raft traffic and that the stream authenticates as from.
func (t *GRPCTransport) authorize(ctx context.Context, host Host, from uint64) error {
	m, ok := host.Peer(from)
	if !ok {
		return errPeerRefused("%x is not a member this node accepts raft traffic from", from)
	}
	return t.authenticate(ctx, host, from, &m)
}

// authenticate checks the stream's credentials for sender from: its peer
// token, and its certificate naming member m (with m nil, a sender that is
// a member no longer, any verified certificate).
func (t *GRPCTransport) authenticate(ctx context.Context, host Host, from uint64, m *Member) error {
	if len(t.sec.Secret) > 0 {
		got := metadata.ValueFromIncomingContext(ctx, peerTokenKey)
		want := peerToken(t.sec.Secret, host.ClusterID(), from, host.ID())
		tok := []byte(nil)
		if len(got) == 1 {
			tok, _ = hex.DecodeString(got[0])
		}
		if subtle.ConstantTimeCompare(tok, want) != 1 {
			return status.Error(codes.Unauthenticated, "raft peer refused: missing or wrong peer token (check -peer-secret-file)")
		}
	}
	if t.sec.RequireCertificate {
		name, err := certificateNames(ctx)
		if err != nil {
			return err
		}
		if m != nil && (m.Name == "" || !slices.Contains(name, m.Name)) {
			return errPeerRefused("the client certificate (%v) does not name member %q", name, m.Name)
		}
	}
	return nil
}

// headersChecked marks the context of a call that AuthorizeHeaders let
// through.
type headersChecked struct{}

// AuthorizeHeaders checks an incoming RaftService call from its headers
// alone: with a secret or required certificates, the call must
// authenticate as the member it names (peerFromKey) or, from a sender that
// names none, as some current member. It runs before any message of the
// call is read, so a caller without the cluster's credentials never has a
// message buffered; Stream and Snapshot still check the sender each
// message names as before. Servers call it from grpc.InTapHandle, when the
// call's headers arrive; Stream and Snapshot call it before their first
// read when the server did not. It returns ctx marked as checked.
func (t *GRPCTransport) AuthorizeHeaders(ctx context.Context) (context.Context, error) {
	t.mu.Lock()
	host := t.host
	t.mu.Unlock()
	if host == nil {
		return ctx, status.Error(codes.Unavailable, "raft transport not started")
	}
	if from, err := t.authorizeHeaders(ctx, host); err != nil {
		return ctx, t.refuse(ctx, from, err)
	}
	return context.WithValue(ctx, headersChecked{}, true), nil
}

// memberLister is implemented by Node.
type memberLister interface{ Members() []MemberStatus }

func (t *GRPCTransport) authorizeHeaders(ctx context.Context, host Host) (from uint64, err error) {
	if len(t.sec.Secret) == 0 && !t.sec.RequireCertificate {
		return 0, nil // -insecure-peers: nothing to prove; every message is checked
	}
	if v := metadata.ValueFromIncomingContext(ctx, peerFromKey); len(v) > 0 {
		from, err := strconv.ParseUint(v[0], 16, 64)
		if err != nil || len(v) != 1 {
			return 0, errPeerRefused("malformed %s header", peerFromKey)
		}
		if rh, ok := host.(removalHost); ok && rh.IsRemoved(from) {
			// Let a removed member that proves who it is hear so.
			return from, t.authenticate(ctx, host, from, nil)
		}
		return from, t.authorize(ctx, host, from)
	}
	if ml, ok := host.(memberLister); ok {
		for _, m := range ml.Members() {
			if m.ID != host.ID() && t.authorize(ctx, host, m.ID) == nil {
				return m.ID, nil
			}
		}
	}
	return 0, status.Error(codes.Unauthenticated, "raft peer refused: the call's headers authenticate no member (check -peer-secret-file and the peer certificates)")
}

// certificateNames returns the CommonName and DNS names of the verified
// client certificate of the connection ctx belongs to.
func certificateNames(ctx context.Context) ([]string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "raft peer refused: no connection information")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil, status.Error(codes.Unauthenticated, "raft peer refused: a verified peer certificate is required")
	}
	leaf := info.State.VerifiedChains[0][0]
	names := append([]string{leaf.Subject.CommonName}, leaf.DNSNames...)
	return names, nil
}

// checkMessage validates one received message before it reaches raft: it
// comes from the stream's authenticated sender, is addressed to this node,
// and the sender is (still) a member.
func checkMessage(host Host, from uint64, m *raftpb.Message) error {
	if m.GetFrom() != from {
		return errPeerRefused("message from %x on a stream authenticated as %x", m.GetFrom(), from)
	}
	if m.GetTo() != host.ID() {
		return errPeerRefused("message for %x sent to member %x", m.GetTo(), host.ID())
	}
	if _, ok := host.Peer(from); !ok {
		return errPeerRefused("%x is not a member this node accepts raft traffic from", from)
	}
	return nil
}

// refuse logs a refused stream (the first and then every 100th) and
// returns err to end it.
func (t *GRPCTransport) refuse(ctx context.Context, from uint64, err error) error {
	if n := t.refusals.Add(1); n == 1 || n%100 == 0 {
		addr := ""
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			addr = p.Addr.String()
		}
		t.log.Warn("refused raft traffic", "from", fmt.Sprintf("%x", from), "remote", addr,
			"err", status.Convert(err).Message(), "refused_total", n)
	}
	return err
}
