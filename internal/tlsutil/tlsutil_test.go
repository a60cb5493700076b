package tlsutil_test

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/kvdb/kvdb/internal/tlsutil"
	"github.com/kvdb/kvdb/internal/tlsutil/tlstest"
)

// serve runs a TLS echo-nothing server with cfg on loopback; each
// connection completes its handshake and is closed.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					_, _ = c.Write([]byte("ok"))
				}
			}()
		}
	}()
	return l.Addr().String()
}

// connect handshakes with addr and returns the server's leaf certificate
// serial, or the error.
func connect(addr string, cfg *tls.Config) (int64, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// TLS 1.3 reports a refused client certificate on the first read.
	if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
		return 0, err
	}
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
}

func TestServerReloadsRenewedCertificate(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	pair := ca.Issue(t, "node1", tlstest.Options{})
	cfg, err := tlsutil.ServerConfig(tlsutil.Files{CertFile: pair.CertFile, KeyFile: pair.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg)
	client, err := tlsutil.ClientConfig(tlsutil.Files{CAFile: ca.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	client.ServerName = "node1"
	first, err := connect(addr, client)
	if err != nil {
		t.Fatal(err)
	}
	ca.Issue(t, "node1", tlstest.Options{}) // renewed in place
	second, err := connect(addr, client)
	if err != nil {
		t.Fatal(err)
	}
	if first == second {
		t.Fatalf("a new connection after renewal got the old certificate (serial %d)", first)
	}
}

func TestClientCertificates(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	other := tlstest.NewCA(t, "other-ca")
	server := ca.Issue(t, "node1", tlstest.Options{})
	cfg, err := tlsutil.ServerConfig(tlsutil.Files{CertFile: server.CertFile, KeyFile: server.KeyFile, CAFile: ca.CAFile, ClientCertAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg)
	dial := func(pair *tlstest.Pair) error {
		f := tlsutil.Files{CAFile: ca.CAFile}
		if pair != nil {
			f.CertFile, f.KeyFile = pair.CertFile, pair.KeyFile
		}
		c, err := tlsutil.ClientConfig(f)
		if err != nil {
			t.Fatal(err)
		}
		c.ServerName = "node1"
		_, err = connect(addr, c)
		return err
	}
	good := ca.Issue(t, "alice", tlstest.Options{})
	if err := dial(&good); err != nil {
		t.Fatalf("a certificate of the trusted CA was refused: %v", err)
	}
	if err := dial(nil); err == nil {
		t.Fatal("a client without a certificate got through -client-cert-auth")
	}
	foreign := other.Issue(t, "mallory", tlstest.Options{})
	if err := dial(&foreign); err == nil {
		t.Fatal("a certificate from another CA got through")
	}
	expired := ca.Issue(t, "bob", tlstest.Options{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	if err := dial(&expired); err == nil {
		t.Fatal("an expired certificate got through")
	}
}

func TestServerConfigNeedsFiles(t *testing.T) {
	if _, err := tlsutil.ServerConfig(tlsutil.Files{}); err == nil {
		t.Fatal("no certificate: want an error")
	}
	ca := tlstest.NewCA(t, "ca")
	p := ca.Issue(t, "node1", tlstest.Options{})
	if _, err := tlsutil.ServerConfig(tlsutil.Files{CertFile: p.CertFile, KeyFile: p.KeyFile, ClientCertAuth: true}); err == nil {
		t.Fatal("client cert auth without a CA: want an error")
	}
}
