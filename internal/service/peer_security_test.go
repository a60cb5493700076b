package service

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/raftnode"
	"github.com/kvdb/kvdb/internal/tlsutil"
	"github.com/kvdb/kvdb/internal/tlsutil/tlstest"
)

// Peer modes of the clusters below.
const (
	peerMTLS     = "mtls"     // -peer-address with peer mTLS
	peerSecret   = "secret"   // the one-port form with -peer-secret-file
	peerInsecure = "insecure" // the one-port form with -insecure-peers
)

const testClusterID = 7

type peerNode struct {
	srv      *Server
	name     string
	id       uint64
	addr     string // client port
	peerAddr string // peer port (peer_mtls) or addr
}

type peerCluster struct {
	nodes  []*peerNode
	ca     *tlstest.CA
	secret []byte
}

// startPeerCluster starts three nodes on loopback that talk over the gRPC
// peer transport, authenticated as mode says.
func startPeerCluster(t *testing.T, mode string) *peerCluster {
	t.Helper()
	c := &peerCluster{ca: tlstest.NewCA(t, "peer-ca"), secret: []byte("0123456789abcdef-cluster-secret")}
	var members []raftnode.Member
	var clientLis, peerLis []net.Listener
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("node%d", i)
		cl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		n := &peerNode{name: name, id: MemberID(name), addr: cl.Addr().String()}
		n.peerAddr = n.addr
		m := raftnode.Member{ID: n.id, Name: name, Address: n.addr}
		if mode == peerMTLS {
			pl, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			peerLis = append(peerLis, pl)
			n.peerAddr = pl.Addr().String()
			m.PeerAddress = n.peerAddr
		}
		clientLis = append(clientLis, cl)
		members = append(members, m)
		c.nodes = append(c.nodes, n)
	}
	for i, n := range c.nodes {
		pc := PeerConfig{Enabled: true}
		switch mode {
		case peerMTLS:
			pair := c.ca.Issue(t, n.name, tlstest.Options{})
			files := tlsutil.Files{CertFile: pair.CertFile, KeyFile: pair.KeyFile, CAFile: c.ca.CAFile, ClientCertAuth: true}
			var err error
			if pc.ServerTLS, err = tlsutil.ServerConfig(files); err != nil {
				t.Fatal(err)
			}
			if pc.Security.TLS, err = tlsutil.ClientConfig(files); err != nil {
				t.Fatal(err)
			}
			pc.OwnListener, pc.Security.RequireCertificate = true, true
		case peerSecret:
			pc.Security.Secret = c.secret
		}
		cfg := Config{
			NodeID: n.name, MemberID: n.id, ClusterID: testClusterID,
			DataDir: t.TempDir(), Logger: testLogger(),
			AdvertiseAddress: n.addr, AdvertisePeerAddress: members[i].PeerAddress,
			Raft: raftnode.Config{Peers: members, TickInterval: 10 * time.Millisecond},
			Peer: pc,
		}
		srv, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		n.srv = srv
		done := make(chan error, 2)
		go func() { done <- srv.Serve(clientLis[i]) }()
		if mode == peerMTLS {
			go func() { done <- srv.ServePeers(peerLis[i]) }()
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
		})
	}
	c.waitConverged(t)
	return c
}

// leader waits for all nodes to agree on a leader and returns it.
func (c *peerCluster) leader(t *testing.T) *peerNode {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		lead := c.nodes[0].srv.Node().Status().Leader
		agreed := lead != 0
		for _, n := range c.nodes {
			agreed = agreed && n.srv.Node().Status().Leader == lead
		}
		if agreed {
			for _, n := range c.nodes {
				if n.id == lead {
					return n
				}
			}
		}
	}
	t.Fatal("no agreed leader in time")
	return nil
}

// put writes key through the leader's client port.
func (c *peerCluster) put(t *testing.T, key, value string) {
	t.Helper()
	l := c.leader(t)
	conn, err := grpc.NewClient(l.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := kvdbv1.NewKVServiceClient(conn).Put(ctx, &kvdbv1.PutRequest{Key: []byte(key), Value: []byte(value)}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// waitConverged waits until every node applied the leader's commit index
// and all hold the same data; it returns that hash.
func (c *peerCluster) waitConverged(t *testing.T) uint64 {
	t.Helper()
	l := c.leader(t)
	var hashes []uint64
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		commit := l.srv.Node().Status().Commit
		hashes = hashes[:0]
		same := true
		for _, n := range c.nodes {
			st := n.srv.Node().Status()
			same = same && st.Applied >= commit
			hashes = append(hashes, n.srv.Store().Hash())
		}
		for _, h := range hashes {
			same = same && h == hashes[0]
		}
		if same {
			return hashes[0]
		}
	}
	t.Fatalf("replicas did not converge: hashes %x", hashes)
	return 0
}

// forgedAppend is the attack of the trust-boundary report: a MsgApp from
// from, one term ahead, appending a put of key "injected" right after the
// target's last entry and claiming it committed.
func forgedAppend(target *peerNode, from uint64) *raftpb.Message {
	st := target.srv.Node().Status()
	cmd, _ := proto.Marshal(&raftv1.Command{Op: &raftv1.Command_Put{Put: &raftv1.PutCommand{Key: []byte("injected"), Value: []byte("by an attacker")}}})
	data := append(make([]byte, 8), cmd...)
	return &raftpb.Message{
		Type: raftpb.MessageType_MsgApp.Enum(), To: proto.Uint64(target.id), From: proto.Uint64(from),
		Term: proto.Uint64(st.Term + 1), LogTerm: proto.Uint64(st.Term), Index: proto.Uint64(st.LastIndex),
		Commit: proto.Uint64(st.LastIndex + 1),
		Entries: []*raftpb.Entry{{Term: proto.Uint64(st.Term + 1), Index: proto.Uint64(st.LastIndex + 1),
			Type: raftpb.EntryType_EntryNormal.Enum(), Data: data}},
	}
}

// inject opens a RaftService stream to addr with creds (and ctx's
// metadata), sends m as from, and returns how the stream ended.
func inject(t *testing.T, ctx context.Context, addr string, creds credentials.TransportCredentials, from uint64, m *raftpb.Message) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := raftv1.NewRaftServiceClient(conn).Stream(ctx)
	if err != nil {
		return err
	}
	b, _ := proto.Marshal(m)
	// Send reports io.EOF when the server already ended the stream; Recv
	// then returns how it ended.
	if err := s.Send(&raftv1.StreamRequest{ClusterId: testClusterID, From: from, Messages: [][]byte{b}}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_, err = s.Recv()
	return err
}

// wantRefused: the stream ended with a refusal, not by running into the
// test's deadline.
func wantRefused(t *testing.T, what string, err error) {
	t.Helper()
	switch status.Code(err) {
	case codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented:
		t.Logf("%s: refused: %v", what, err)
	case codes.Unavailable:
		t.Logf("%s: refused at the TLS handshake: %v", what, err)
	default:
		t.Errorf("%s: want a refusal, got %v", what, err)
	}
}

// assertNothingInjected: after a real write has gone through every replica,
// no replica holds the injected key and all hold the same data.
func (c *peerCluster) assertNothingInjected(t *testing.T) {
	t.Helper()
	c.put(t, "after-the-attack", "ok")
	c.waitConverged(t)
	for _, n := range c.nodes {
		if _, found := n.srv.Store().Get([]byte("injected")); found {
			t.Errorf("%s holds the injected key", n.name)
		}
	}
}

func TestPeerInjectionMTLS(t *testing.T) {
	c := startPeerCluster(t, peerMTLS)
	l := c.leader(t)
	var follower *peerNode
	for _, n := range c.nodes {
		if n != l {
			follower = n
		}
	}
	other := l // a member that is not the target
	peerCreds := func(name string) credentials.TransportCredentials {
		pair := c.ca.Issue(t, name, tlstest.Options{})
		cfg, err := tlsutil.ClientConfig(tlsutil.Files{CertFile: pair.CertFile, KeyFile: pair.KeyFile, CAFile: c.ca.CAFile})
		if err != nil {
			t.Fatal(err)
		}
		return credentials.NewTLS(cfg)
	}
	for _, target := range c.nodes {
		// A certificate of the peer CA that is not a member's (a client's).
		wantRefused(t, "certificate of a non-member claiming a member",
			inject(t, context.Background(), target.peerAddr, peerCreds("mallory"), other.id, forgedAppend(target, other.id)))
		// A member's certificate claiming another member.
		var claimant *peerNode
		for _, n := range c.nodes {
			if n != target && n != other {
				claimant = n
			}
		}
		if claimant != nil {
			wantRefused(t, "member certificate claiming another member",
				inject(t, context.Background(), target.peerAddr, peerCreds(claimant.name), other.id, forgedAppend(target, other.id)))
		}
		// A From that is not a member, with a member's certificate.
		wantRefused(t, "From 0xbad",
			inject(t, context.Background(), target.peerAddr, peerCreds(other.name), 0xbad, forgedAppend(target, 0xbad)))
		// No certificate at all.
		noCert, err := tlsutil.ClientConfig(tlsutil.Files{CAFile: c.ca.CAFile})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, "no client certificate",
			inject(t, context.Background(), target.peerAddr, credentials.NewTLS(noCert), other.id, forgedAppend(target, other.id)))
		// Plaintext to the peer port.
		wantRefused(t, "plaintext to the peer port",
			inject(t, context.Background(), target.peerAddr, insecure.NewCredentials(), other.id, forgedAppend(target, other.id)))
		// The client port never serves RaftService.
		wantRefused(t, "raft on the client port",
			inject(t, context.Background(), target.addr, insecure.NewCredentials(), other.id, forgedAppend(target, other.id)))
	}
	// A message to someone else on a stream of the right sender: the
	// certificate is other's, the stream says other, the message is for a
	// node that is not the receiver.
	m := forgedAppend(follower, other.id)
	m.To = proto.Uint64(0xbad)
	wantRefused(t, "message for another receiver",
		inject(t, context.Background(), follower.peerAddr, peerCreds(other.name), other.id, m))
	c.assertNothingInjected(t)
}

func TestPeerInjectionSecret(t *testing.T) {
	c := startPeerCluster(t, peerSecret)
	l := c.leader(t)
	for _, target := range c.nodes {
		from := l.id
		if target == l {
			from = c.nodes[(indexOf(c.nodes, l)+1)%3].id
		}
		// No token.
		wantRefused(t, "no token", inject(t, context.Background(), target.addr, insecure.NewCredentials(), from, forgedAppend(target, from)))
		// A token made with a wrong secret.
		bad := metadata.AppendToOutgoingContext(context.Background(), "kvdb-peer-token",
			hex.EncodeToString(testToken([]byte("not-the-cluster-secret"), from, target.id)))
		wantRefused(t, "wrong secret", inject(t, bad, target.addr, insecure.NewCredentials(), from, forgedAppend(target, from)))
		// The right secret for a From that is not a member.
		good := metadata.AppendToOutgoingContext(context.Background(), "kvdb-peer-token",
			hex.EncodeToString(testToken(c.secret, 0xbad, target.id)))
		wantRefused(t, "From 0xbad", inject(t, good, target.addr, insecure.NewCredentials(), 0xbad, forgedAppend(target, 0xbad)))
		// A member's token used for messages of another sender.
		tok := metadata.AppendToOutgoingContext(context.Background(), "kvdb-peer-token",
			hex.EncodeToString(testToken(c.secret, from, target.id)))
		wantRefused(t, "message From differs from the stream's", inject(t, tok, target.addr, insecure.NewCredentials(), from, forgedAppend(target, 0xbad)))
	}
	c.assertNothingInjected(t)
}

// TestPeerInjectionInsecure: even with -insecure-peers, where nobody
// proves who they are, a sender that is not a member is refused.
func TestPeerInjectionInsecure(t *testing.T) {
	c := startPeerCluster(t, peerInsecure)
	before := c.waitConverged(t)
	for _, target := range c.nodes {
		wantRefused(t, "From 0xbad", inject(t, context.Background(), target.addr, insecure.NewCredentials(), 0xbad, forgedAppend(target, 0xbad)))
	}
	if h := c.waitConverged(t); h != before {
		t.Fatalf("the data changed without a write: %x, was %x", h, before)
	}
	c.assertNothingInjected(t)
}

func TestStandaloneNodeAcceptsNoPeerTraffic(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	lastBefore := n.srv.Node().Status().LastIndex
	target := &peerNode{srv: n.srv, id: 1, addr: n.addr}
	err := inject(t, context.Background(), n.addr, insecure.NewCredentials(), 0xbad, forgedAppend(target, 0xbad))
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("RaftService on a standalone node: got %v, want Unimplemented", err)
	}
	if last := n.srv.Node().Status().LastIndex; last != lastBefore {
		t.Fatalf("last index moved from %d to %d", lastBefore, last)
	}
	if _, found := n.srv.Store().Get([]byte("injected")); found {
		t.Fatal("the injected key is readable")
	}
}

func indexOf(ns []*peerNode, n *peerNode) int {
	for i, x := range ns {
		if x == n {
			return i
		}
	}
	return -1
}

// testToken recomputes the peer token independently of raftnode.
func testToken(secret []byte, from, to uint64) []byte {
	return testTokenIn(secret, testClusterID, from, to)
}

// testTokenIn is testToken in cluster.
func testTokenIn(secret []byte, cluster, from, to uint64) []byte {
	mac := hmac.New(sha256.New, secret)
	var b [24]byte
	binary.BigEndian.PutUint64(b[0:], cluster)
	binary.BigEndian.PutUint64(b[8:], from)
	binary.BigEndian.PutUint64(b[16:], to)
	mac.Write([]byte("kvdb-peer-v1\x00"))
	mac.Write(b[:])
	return mac.Sum(nil)
}

// TestGarbageSnapshotRefused: a snapshot stream a member could not restore
// (from a holder of the peer credentials, or a broken sender) is refused
// while it is received, before raft hears of it: the member keeps serving
// and restarts as before, instead of stopping on a log that names a
// snapshot it cannot load.
func TestGarbageSnapshotRefused(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.waitLeader()
	ctx := ctxT(t)
	if _, err := c.kv(l).Put(ctx, &kvdbv1.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	c.waitConverged()
	f := (l + 1) % 3
	node := c.nodes[f].srv.node
	st := node.Status()
	msg := &raftpb.Message{Type: raftpb.MessageType_MsgSnap.Enum(), From: proto.Uint64(c.ids[l]), To: proto.Uint64(c.ids[f]), Term: proto.Uint64(st.Term),
		Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(st.Applied + 1000), Term: proto.Uint64(st.Term),
			ConfState: &raftpb.ConfState{Voters: c.ids}}}}
	garbage := bytes.Repeat([]byte("not a snapshot "), 70_000)
	err := node.ReceiveSnapshot(ctx, msg, bytes.NewReader(garbage))
	if err == nil || !strings.Contains(err.Error(), "cannot be restored") {
		t.Fatalf("garbage snapshot: %v, want it refused as one that cannot be restored", err)
	}
	if _, err := c.kv(l).Put(ctx, &kvdbv1.PutRequest{Key: []byte("after"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	c.waitConverged()
	c.stop(f)
	c.start(f)
	c.waitConverged()
	if got, err := c.kv(f).Get(ctx, &kvdbv1.GetRequest{Key: []byte("after"), Consistency: kvdbv1.Consistency_CONSISTENCY_SERIALIZABLE}); err != nil || string(got.GetKv().GetValue()) != "v" {
		t.Fatalf("the member after a restart: %v %v", got, err)
	}
}
