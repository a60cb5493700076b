// Command devcerts writes development certificates for a KVDB cluster with
// Go's crypto/x509 (make dev-certs): a client-facing CA with a server
// certificate per node and a client certificate for kvdbctl, and a separate
// peer CA with a peer certificate per node (its CommonName and DNS name
// are the node id, as peer mTLS requires). Keys are written 0600 and are
// for development only: they are generated on each machine, never
// committed.
//
//	go run ./test/devcerts -dir certs -nodes node1,node2,node3
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func main() {
	dir := flag.String("dir", "certs", "output directory")
	nodes := flag.String("nodes", "node1,node2,node3", "comma-separated node ids (-node-id)")
	days := flag.Int("days", 365, "validity in days")
	flag.Parse()
	if err := run(*dir, strings.Split(*nodes, ","), time.Duration(*days)*24*time.Hour); err != nil {
		fmt.Fprintln(os.Stderr, "devcerts:", err)
		os.Exit(1)
	}
}

func run(dir string, nodes []string, validity time.Duration) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	clientCA, err := newCA(dir, "ca", "KVDB development client CA", validity)
	if err != nil {
		return err
	}
	peerCA, err := newCA(dir, "peer-ca", "KVDB development peer CA", validity)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if err := issue(dir, n, clientCA, n, validity); err != nil {
			return err
		}
		if err := issue(dir, n+"-peer", peerCA, n, validity); err != nil {
			return err
		}
	}
	if err := issue(dir, "client", clientCA, "client", validity); err != nil {
		return err
	}
	fmt.Printf("development certificates for %s written to %s\n", strings.Join(nodes, ", "), dir)
	return nil
}

func newCA(dir, file, cn string, validity time.Duration) (*ca, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validity),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	if err := write(dir, file, der, key); err != nil {
		return nil, err
	}
	return &ca{cert: cert, key: key}, nil
}

// issue writes file.pem and file-key.pem: a certificate for common name
// cn, usable as a server (DNS cn and localhost, 127.0.0.1, ::1) and as a
// client.
func issue(dir, file string, by *ca, cn string, validity time.Duration) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{cn, "localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, by.cert, &key.PublicKey, by.key)
	if err != nil {
		return err
	}
	return write(dir, file, der, key)
}

func write(dir, file string, der []byte, key *ecdsa.PrivateKey) error {
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, file+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, file+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n.Add(n, big.NewInt(1))
}
