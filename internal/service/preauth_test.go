package service

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	raftv1 "github.com/kvdb/kvdb/gen/kvdb/raft/v1"
	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/raftnode"
)

// readCountingListener counts the bytes the server reads from all the
// connections it accepts.
type readCountingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *readCountingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &readCountingConn{Conn: c, n: &l.n}, nil
}

type readCountingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *readCountingConn) Read(p []byte) (int, error) {
	k, err := c.Conn.Read(p)
	c.n.Add(int64(k))
	return k, err
}

// CloseWrite keeps the half-close the port's refusals use.
func (c *readCountingConn) CloseWrite() error { return closeWrite(c.Conn) }

func countingListen(t *testing.T) *readCountingListener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &readCountingListener{Listener: l}
}

// TestUnauthenticatedCallsRefusedBeforeTheirRequest: with authentication
// on, calls without a token are refused from their headers: the node does
// not read their large requests, however many one connection sends at once.
func TestUnauthenticatedCallsRefusedBeforeTheirRequest(t *testing.T) {
	lis := countingListen(t)
	n := startNodeOn(t, t.TempDir(), lis, nil)
	waitLeader(t, n)
	a := setUpAuth(t, n)
	alice := login(t, a, "alice", "alicepw")

	conn, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kv, health := kvdbv1.NewKVServiceClient(conn), healthpb.NewHealthClient(conn)
	// The connection is up, and what it takes is counted from here.
	if _, err := health.Check(ctxT(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	const calls, size = 8, 6 << 20 // each under the 8 MiB the node reads
	before := lis.n.Load()
	var wg sync.WaitGroup
	errs := make([]error, calls)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = kv.Put(ctxT(t), &kvdbv1.PutRequest{Key: []byte(fmt.Sprintf("app/%d", i)), Value: make([]byte, size)})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("put %d without a token: %v, want Unauthenticated", i, err)
		}
	}
	// Frames are read in order: once this answer is back, the node has
	// read whatever of the puts it was going to.
	if _, err := health.Check(ctxT(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	read := lis.n.Load() - before
	t.Logf("%d refused puts of %d bytes: the node read %d bytes", calls, size, read)
	if read > 2<<20 {
		t.Fatalf("the node read %d bytes of %d refused puts of %d bytes", read, calls, size)
	}

	// An authenticated client's large request is read and served.
	if _, err := n.kv.Put(alice, &kvdbv1.PutRequest{Key: []byte("app/big"), Value: make([]byte, 1<<20)}); err != nil {
		t.Fatalf("authenticated put: %v", err)
	}
}

// serverSettings returns the SETTINGS a gRPC server at addr sends a new
// connection.
func serverSettings(t *testing.T, addr string) map[http2.SettingID]uint32 {
	t.Helper()
	var mu sync.Mutex
	var got bytes.Buffer
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a)
			if err != nil {
				return nil, err
			}
			return &recordingConn{Conn: c, mu: &mu, got: &got}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Any answer will do: it comes after the server's SETTINGS.
	_, _ = healthpb.NewHealthClient(conn).Check(ctxT(t), &healthpb.HealthCheckRequest{})
	mu.Lock()
	defer mu.Unlock()
	// The port's protocol detection may send a SETTINGS frame of its own
	// before the gRPC server's: merge every SETTINGS frame the server sent.
	fr := http2.NewFramer(nil, bytes.NewReader(got.Bytes()))
	m := map[http2.SettingID]uint32{}
	for range 100 {
		f, err := fr.ReadFrame()
		if err != nil {
			break
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			_ = sf.ForeachSetting(func(s http2.Setting) error { m[s.ID] = s.Val; return nil })
		}
	}
	t.Logf("server settings: %v", m)
	return m
}

// recordingConn keeps the first bytes it reads.
type recordingConn struct {
	net.Conn
	mu  *sync.Mutex
	got *bytes.Buffer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if c.got.Len() < 64<<10 {
		c.got.Write(p[:n])
	}
	c.mu.Unlock()
	return n, err
}

func TestClientConnectionStreamsBounded(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	got, ok := serverSettings(t, n.addr)[http2.SettingMaxConcurrentStreams]
	if !ok || got != MaxConcurrentStreams {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d (sent: %v), want %d", got, ok, MaxConcurrentStreams)
	}
}

// ghostID is the second member of the peer tests' clusters: in the
// membership, never running.
const ghostID = 2

// peerPortNode is a node with the cluster secret whose second member never
// runs. With own, raft traffic is served on a peer listener of its own;
// without, on the client port. raftLis is where raft traffic goes.
type peerPortNode struct {
	*testNode
	raftLis  *readCountingListener
	raftAddr string
}

func startPeerPortNode(t *testing.T, own bool, mutate func(*Config)) *peerPortNode {
	t.Helper()
	clientLis := countingListen(t)
	p := &peerPortNode{raftLis: clientLis}
	self := raftnode.Member{ID: 1, Name: "node1", Address: clientLis.Addr().String()}
	if own {
		p.raftLis = countingListen(t)
		self.PeerAddress = p.raftLis.Addr().String()
	}
	p.raftAddr = p.raftLis.Addr().String()
	p.testNode = startNodeOn(t, t.TempDir(), clientLis, func(c *Config) {
		c.AdvertiseAddress, c.AdvertisePeerAddress = self.Address, self.PeerAddress
		c.Raft.Peers = []raftnode.Member{self, {ID: ghostID, Name: "ghost", Address: "127.0.0.1:1"}}
		c.Peer = PeerConfig{Enabled: true, OwnListener: own, Security: raftnode.PeerSecurity{Secret: []byte("0123456789abcdef-cluster-secret")}}
		if mutate != nil {
			mutate(c)
		}
	})
	if own {
		done := make(chan error, 1)
		go func() { done <- p.srv.ServePeers(p.raftLis) }()
		t.Cleanup(func() {
			p.stop(t)
			if err := <-done; err != nil {
				t.Errorf("ServePeers: %v", err)
			}
		})
	}
	return p
}

func hexPeerToken(secret []byte, cluster, from, to uint64) string {
	return hex.EncodeToString(testTokenIn(secret, cluster, from, to))
}

// TestPeerCallRefusedBeforeItsMessage: a raft stream whose headers do not
// carry the cluster's credentials is refused before its first message is
// read, on the peer listener and on the client port.
func TestPeerCallRefusedBeforeItsMessage(t *testing.T) {
	for _, own := range []bool{true, false} {
		t.Run(fmt.Sprintf("own listener=%v", own), func(t *testing.T) {
			p := startPeerPortNode(t, own, nil)
			secret := []byte("0123456789abcdef-cluster-secret")
			conn, err := grpc.NewClient(p.raftAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			client := raftv1.NewRaftServiceClient(conn)
			// send opens a stream with md, sends a request of size bytes
			// and returns how the stream ended and what the node read.
			send := func(md metadata.MD, cluster uint64, size int) (error, int64) {
				before := p.raftLis.n.Load()
				ctx := metadata.NewOutgoingContext(ctxT(t), md)
				s, err := client.Stream(ctx)
				if err == nil {
					m, _ := proto.Marshal(&raftpb.Message{Type: raftpb.MessageType_MsgHeartbeat.Enum(), From: proto.Uint64(ghostID), To: proto.Uint64(1), Context: make([]byte, size)})
					err = s.Send(&raftv1.StreamRequest{ClusterId: cluster, From: ghostID, Messages: [][]byte{m}})
					if err == nil || errors.Is(err, io.EOF) {
						_, err = s.Recv()
					}
				}
				// Frames are read in order: an answered call behind the
				// request settles what the node read of it.
				if s2, err2 := client.Stream(ctxT(t)); err2 == nil {
					_ = s2.Send(&raftv1.StreamRequest{ClusterId: 0, From: ghostID})
					_, _ = s2.Recv()
				}
				return err, p.raftLis.n.Load() - before
			}
			// Under what each port's server reads of one message: 64 MiB
			// on the peer listener, 8 MiB on the client port.
			big := 20 << 20
			if !own {
				big = 6 << 20
			}
			from := strconv.FormatUint(ghostID, 16)
			for name, md := range map[string]metadata.MD{
				"no token":                      metadata.Pairs("kvdb-peer-from", from),
				"wrong secret":                  metadata.Pairs("kvdb-peer-from", from, "kvdb-peer-token", hexPeerToken([]byte("not-the-secret"), 42, ghostID, 1)),
				"token of another sender":       metadata.Pairs("kvdb-peer-from", from, "kvdb-peer-token", hexPeerToken(secret, 42, 3, 1)),
				"not a member":                  metadata.Pairs("kvdb-peer-from", "bad", "kvdb-peer-token", hexPeerToken(secret, 42, 0xbad, 1)),
				"no sender, wrong secret":       metadata.Pairs("kvdb-peer-token", hexPeerToken([]byte("not-the-secret"), 42, ghostID, 1)),
				"no sender, no token":           nil,
				"no sender, non-member's token": metadata.Pairs("kvdb-peer-token", hexPeerToken(secret, 42, 0xbad, 1)),
			} {
				err, read := send(md, 42, big)
				t.Logf("%s: %v; the node read %d bytes", name, err, read)
				if c := status.Code(err); c != codes.Unauthenticated && c != codes.PermissionDenied {
					t.Errorf("%s: %v, want a refusal", name, err)
				}
				if read > 1<<20 {
					t.Errorf("%s: the node read %d bytes of a refused %d-byte request", name, read, big)
				}
			}
			// With the right token (with or without the sender's header),
			// the request is read: here it is answered with the cluster
			// mismatch.
			for name, md := range map[string]metadata.MD{
				"sender and token": metadata.Pairs("kvdb-peer-from", from, "kvdb-peer-token", hexPeerToken(secret, 42, ghostID, 1)),
				"token alone":      metadata.Pairs("kvdb-peer-token", hexPeerToken(secret, 42, ghostID, 1)),
			} {
				err, read := send(md, 43, 1<<20)
				if err != nil || read < 1<<20 {
					t.Errorf("%s: %v after reading %d bytes, want the request read and answered", name, err, read)
				}
			}
		})
	}
}

// stillOpen reads c for a moment: nil when it stays open (the server may
// have sent its SETTINGS), the read error when the server closed it.
func stillOpen(c net.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 4096)
	for range 100 {
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil
			}
			return err
		}
	}
	return errors.New("the server keeps sending")
}

func TestPeerListenerBounds(t *testing.T) {
	t.Run("connection cap", func(t *testing.T) {
		const limit = 2
		p := startPeerPortNode(t, true, func(c *Config) {
			c.Peer.MaxConnections = limit
			c.ProtocolDetectTimeout = time.Minute
		})
		var open []net.Conn
		for range limit {
			c, err := net.Dial("tcp", p.raftAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			open = append(open, c)
		}
		over, err := net.Dial("tcp", p.raftAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer over.Close()
		waitClosed(t, over, 10*time.Second)
		for i, c := range open {
			if err := stillOpen(c); err != nil {
				t.Fatalf("connection %d under the cap: %v, want it open", i, err)
			}
		}
		// A slot freed is taken again.
		open[0].Close()
		for i := 0; ; i++ {
			c, err := net.Dial("tcp", p.raftAddr)
			if err != nil {
				t.Fatal(err)
			}
			err = stillOpen(c)
			c.Close()
			if err == nil {
				break
			}
			if i == 50 {
				t.Fatal("no connection accepted after one under the cap closed")
			}
		}
	})
	t.Run("connections per host", func(t *testing.T) {
		// A cap of 40: one host holds at most 10 of them, and the others
		// still get in.
		p := startPeerPortNode(t, true, func(c *Config) {
			c.Peer.MaxConnections = 40
			c.ProtocolDetectTimeout = time.Minute
		})
		dialFrom := func(ip string) net.Conn {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
			c, err := d.Dial("tcp", p.raftAddr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}
		var held []net.Conn
		for range 10 {
			held = append(held, dialFrom("127.0.0.2"))
		}
		waitClosed(t, dialFrom("127.0.0.2"), 10*time.Second)
		for i, c := range held {
			if err := stillOpen(c); err != nil {
				t.Fatalf("connection %d of the host's 10: %v, want it open", i, err)
			}
		}
		if err := stillOpen(dialFrom("127.0.0.3")); err != nil {
			t.Fatalf("a connection from another host: %v, want it open", err)
		}
	})
	t.Run("silent connection", func(t *testing.T) {
		const detect = 300 * time.Millisecond
		p := startPeerPortNode(t, true, func(c *Config) { c.ProtocolDetectTimeout = detect })
		c, err := net.Dial("tcp", p.raftAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		waitClosed(t, c, detect+10*time.Second)
	})
	t.Run("streams per connection", func(t *testing.T) {
		p := startPeerPortNode(t, true, nil)
		got, ok := serverSettings(t, p.raftAddr)[http2.SettingMaxConcurrentStreams]
		if !ok || got != maxPeerStreams {
			t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d (sent: %v), want %d", got, ok, maxPeerStreams)
		}
	})
}

// TestAnonymousCallsBounded: with authentication on, the calls that carry
// no identity are bounded node-wide, refused from their headers past the
// bound; calls with a token are not counted.
func TestAnonymousCallsBounded(t *testing.T) {
	const limit = 2
	n := startNode(t, t.TempDir(), func(c *Config) { c.MaxAnonymousCalls = limit })
	a := setUpAuth(t, n)
	alice := login(t, a, "alice", "alicepw")
	health := healthpb.NewHealthClient(n.conn)
	// Health watches hold their calls open.
	var cancels []context.CancelFunc
	for i := range limit {
		ctx, cancel := context.WithCancel(ctxT(t))
		defer cancel()
		w, err := health.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = w.Recv()
		}
		if err != nil {
			t.Fatalf("anonymous watch %d: %v", i, err)
		}
		cancels = append(cancels, cancel)
	}
	if _, err := health.Check(ctxT(t), &healthpb.HealthCheckRequest{}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("anonymous call past the bound: %v, want ResourceExhausted", err)
	}
	if _, err := a.Authenticate(ctxT(t), &kvdbv1.AuthenticateRequest{Name: "alice", Password: "alicepw"}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Authenticate past the bound: %v, want ResourceExhausted", err)
	}
	if _, err := health.Check(alice, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("a call with a token: %v", err)
	}
	// A call that ends gives its place back.
	cancels[0]()
	for i := 0; ; i++ {
		_, err := health.Check(ctxT(t), &healthpb.HealthCheckRequest{})
		if err == nil {
			break
		}
		if status.Code(err) != codes.ResourceExhausted || i == 1000 {
			t.Fatalf("anonymous call after one ended: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHeaderListBounded: a call's headers are read before anything checks
// its caller, so the node advertises and enforces MaxHeaderListSize (gRPC's
// default allows 16 MiB). On a connection already serving gRPC, a second
// call whose header block is 1 MiB (in CONTINUATION frames) is refused
// (RST_STREAM, or the connection closed) instead of being read and answered. (The first call's headers are
// bounded by protocol detection, sniffMaxBytes.)
func TestHeaderListBounded(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	c, err := net.DialTimeout("tcp", n.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	headers := func(extra ...hpack.HeaderField) []byte {
		var block bytes.Buffer
		enc := hpack.NewEncoder(&block)
		fields := append([]hpack.HeaderField{
			{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
			{Name: ":path", Value: "/grpc.health.v1.Health/Check"}, {Name: ":authority", Value: "kvdb"},
			{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
		}, extra...)
		for _, f := range fields {
			if err := enc.WriteField(f); err != nil {
				t.Fatal(err)
			}
		}
		return block.Bytes()
	}
	// A small call first: the port hands the connection to gRPC.
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headers(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteData(1, true, []byte{0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	var advertised uint32
	answered := false
	for advertised == 0 || !answered {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("before the oversized call: %v (advertised %d, answered %v)", err, advertised, answered)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if v, ok := f.Value(http2.SettingMaxHeaderListSize); ok {
				advertised = v
			}
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			answered = answered || f.StreamID == 1
		}
	}
	if advertised != MaxHeaderListSize {
		t.Fatalf("SETTINGS_MAX_HEADER_LIST_SIZE = %d, want %d", advertised, MaxHeaderListSize)
	}
	b := headers(hpack.HeaderField{Name: "x-big", Value: string(bytes.Repeat([]byte("a"), 1<<20))})
	const chunk = 16 << 10
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: b[:chunk]}); err != nil {
		t.Fatal(err)
	}
	for off := chunk; off < len(b); off += chunk {
		end := min(off+chunk, len(b))
		if err := fr.WriteContinuation(3, end == len(b), b[off:end]); err != nil {
			return // the node closed the connection rather than read it all
		}
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return // closed: refused as a whole
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			if f.StreamID == 3 {
				return
			}
		case *http2.GoAwayFrame:
			return // the connection refused as a whole is as good
		case *http2.HeadersFrame:
			if f.StreamID == 3 {
				t.Fatal("the call with a 1 MiB header block was answered")
			}
		}
	}
}
