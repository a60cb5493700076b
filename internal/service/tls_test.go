package service

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/tlsutil"
	"github.com/kvdb/kvdb/internal/tlsutil/tlstest"
	"github.com/kvdb/kvdb/internal/wire"
)

// startTLSNode serves a standalone node whose port is TLS only, with
// client certificates required when mtls.
func startTLSNode(t *testing.T, ca *tlstest.CA, mtls bool) (*testNode, tlstest.Pair) {
	t.Helper()
	pair := ca.Issue(t, "node1", tlstest.Options{})
	files := tlsutil.Files{CertFile: pair.CertFile, KeyFile: pair.KeyFile}
	if mtls {
		files.CAFile, files.ClientCertAuth = ca.CAFile, true
	}
	cfg, err := tlsutil.ServerConfig(files)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := startNodeOn(t, t.TempDir(), lis, func(c *Config) { c.TLS = cfg; c.EnableMetrics = true })
	return n, pair
}

func tlsClient(t *testing.T, ca *tlstest.CA, pair *tlstest.Pair) *tls.Config {
	t.Helper()
	f := tlsutil.Files{CAFile: ca.CAFile}
	if pair != nil {
		f.CertFile, f.KeyFile = pair.CertFile, pair.KeyFile
	}
	c, err := tlsutil.ClientConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// grpcStatus calls Status over creds and returns the error.
func grpcStatus(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = kvdbv1.NewAdminServiceClient(conn).Status(ctx, &kvdbv1.StatusRequest{})
	return err
}

// binaryHello sends a client hello over c and reads the server hello.
func binaryHello(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(wire.AppendClientHello(nil, wire.Version)); err != nil {
		return err
	}
	var b [wire.ServerHelloSize]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return err
	}
	_, err := wire.ParseServerHello(b[:])
	return err
}

// waitLeaderTLS waits for the node to lead (asked in-process: its port
// speaks TLS only).
func waitLeaderTLS(t *testing.T, n *testNode) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if n.srv.Node().Status().Leader != 0 {
			return
		}
	}
	t.Fatal("no leader")
}

func TestTLSOnEveryProtocol(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	n, _ := startTLSNode(t, ca, false)
	good := tlsClient(t, ca, nil)
	waitLeaderTLS(t, n)

	if err := grpcStatus(t, n.addr, credentials.NewTLS(good)); err != nil {
		t.Fatalf("gRPC over TLS: %v", err)
	}
	if err := grpcStatus(t, n.addr, insecure.NewCredentials()); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext gRPC to a TLS node: got %v, want Unavailable", err)
	}
	// Binary protocol inside TLS works; in plaintext the hello gets no answer.
	tc, err := tls.Dial("tcp", n.addr, good.Clone())
	if err != nil {
		t.Fatal(err)
	}
	if err := binaryHello(tc); err != nil {
		t.Fatalf("binary protocol over TLS: %v", err)
	}
	tc.Close()
	pc, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := binaryHello(pc); err == nil {
		t.Fatal("plaintext binary protocol to a TLS node got a hello")
	}
	pc.Close()
	// HTTP: /readyz over HTTPS (the client offers h2 and http/1.1, as curl
	// does, and gets http/1.1); plain HTTP fails.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: good.Clone(), ForceAttemptHTTP2: true}}
	resp, err := hc.Get("https://" + n.addr + "/healthz")
	if err != nil {
		t.Fatalf("HTTPS /healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTPS /healthz: %s", resp.Status)
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get("http://" + n.addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP to a TLS node answered 200")
		}
	}
}

func TestTLSClientCertificates(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	other := tlstest.NewCA(t, "other-ca")
	n, _ := startTLSNode(t, ca, true)
	waitLeaderTLS(t, n)

	alice := ca.Issue(t, "alice", tlstest.Options{})
	if err := grpcStatus(t, n.addr, credentials.NewTLS(tlsClient(t, ca, &alice))); err != nil {
		t.Fatalf("a client certificate of the trusted CA: %v", err)
	}
	if err := grpcStatus(t, n.addr, credentials.NewTLS(tlsClient(t, ca, nil))); err == nil {
		t.Fatal("no client certificate got through -client-cert-auth")
	}
	mallory := other.Issue(t, "mallory", tlstest.Options{})
	if err := grpcStatus(t, n.addr, credentials.NewTLS(tlsClient(t, ca, &mallory))); err == nil {
		t.Fatal("a client certificate from another CA got through")
	}
	expired := ca.Issue(t, "bob", tlstest.Options{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	if err := grpcStatus(t, n.addr, credentials.NewTLS(tlsClient(t, ca, &expired))); err == nil {
		t.Fatal("an expired client certificate got through")
	}
}

// TestTLSReloadsRenewedCertificate: a certificate renewed on disk is used
// by the next connection; an expired one put in its place is refused by
// clients.
func TestTLSReloadsRenewedCertificate(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	n, _ := startTLSNode(t, ca, false)
	waitLeaderTLS(t, n)
	serial := func() (int64, error) {
		c, err := tls.Dial("tcp", n.addr, tlsClient(t, ca, nil))
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
	}
	first, err := serial()
	if err != nil {
		t.Fatal(err)
	}
	ca.Issue(t, "node1", tlstest.Options{})
	second, err := serial()
	if err != nil {
		t.Fatal(err)
	}
	if first == second {
		t.Fatal("the renewed certificate was not picked up by a new connection")
	}
	ca.Issue(t, "node1", tlstest.Options{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	if _, err := serial(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("an expired server certificate: got %v, want a verification error", err)
	}
}

// TestProtectedModeDecision tests the decision on the connection's source
// address directly: only loopback gets through while protected mode is in
// force, and TLS or authentication lifts it.
func TestProtectedModeDecision(t *testing.T) {
	tcp := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000} }
	auth := false
	s := &Server{cfg: Config{ProtectedMode: true, AuthEnabled: func() bool { return auth }}}
	for _, c := range []struct {
		addr   net.Addr
		refuse bool
	}{
		{tcp("127.0.0.1"), false},
		{tcp("127.8.9.10"), false},
		{tcp("::1"), false},
		{tcp("10.1.2.3"), true},
		{tcp("192.168.0.7"), true},
		{tcp("::ffff:10.1.2.3"), true},
		{tcp("fe80::1"), true},
		{tcp("2001:db8::1"), true},
		{&net.UnixAddr{Name: "/tmp/kvdb.sock", Net: "unix"}, false},
	} {
		if got := s.refuseClient(c.addr); got != c.refuse {
			t.Errorf("protected mode, client %v: refuse=%v, want %v", c.addr, got, c.refuse)
		}
	}
	remote := tcp("10.1.2.3")
	auth = true
	if s.refuseClient(remote) {
		t.Error("authentication enabled: a remote client is still refused")
	}
	auth = false
	s.cfg.TLS = &tls.Config{}
	if s.refuseClient(remote) {
		t.Error("TLS on: a remote client is still refused")
	}
	s.cfg.TLS = nil
	s.cfg.ProtectedMode = false
	if s.refuseClient(remote) {
		t.Error("-protected-mode=false: a remote client is still refused")
	}
}

// TestProtectedModeAnswers: the refusal each protocol gives, driven
// through the handlers with a non-loopback source address.
func TestProtectedModeAnswers(t *testing.T) {
	s := &Server{cfg: Config{ProtectedMode: true, AuthEnabled: func() bool { return false }}}
	remote := &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 40000}
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: remote})
	_, err := s.protectedUnary(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/kvdb.v1.KVService/Get"},
		func(context.Context, any) (any, error) { t.Fatal("handler ran"); return nil, nil })
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "-protected-mode=false") {
		t.Fatalf("gRPC: %v", err)
	}
	rec := &recorder{header: http.Header{}}
	req, _ := http.NewRequest("GET", "/metrics", nil)
	req.RemoteAddr = remote.String()
	s.protectedHTTP(http.NotFoundHandler()).ServeHTTP(rec, req)
	if rec.code != http.StatusForbidden || !strings.Contains(rec.body.String(), "-protected-mode=false") {
		t.Fatalf("HTTP: %d %q", rec.code, rec.body.String())
	}
	// Binary: hello, then a connection-level PERMISSION_DENIED.
	client, server := net.Pipe()
	go refuseBinary(server)
	defer client.Close()
	if err := binaryHello(client); err != nil {
		t.Fatal(err)
	}
	f, err := wire.NewReader(client, 4096, 1<<20).Next()
	if err != nil {
		t.Fatal(err)
	}
	body := f.Body
	if f.Op != wire.OpError || f.Status != wire.StatusPermissionDenied || !strings.Contains(string(body), "-protected-mode=false") {
		t.Fatalf("binary: op %v status %v body %q", f.Op, f.Status, body)
	}
}

type recorder struct {
	header http.Header
	code   int
	body   strings.Builder
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(c int)           { r.code = c }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
