// Package tlsutil builds the TLS configurations of kvdb-server from PEM
// files, re-reading the files when they change on disk: a renewed
// certificate (or CA bundle) is used by the next handshake, without a
// restart. Connections already open keep what they negotiated.
package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
)

// Files names the PEM files of one TLS endpoint.
type Files struct {
	// CertFile and KeyFile are this side's certificate chain and key.
	CertFile, KeyFile string
	// CAFile holds the CA certificates that verify the other side: client
	// certificates on a server (with ClientCertAuth), server certificates
	// on a client. Empty on a client means the system roots.
	CAFile string
	// ClientCertAuth (servers): require and verify a client certificate
	// signed by a CA of CAFile.
	ClientCertAuth bool
}

// stamp identifies one version of a file.
type stamp struct {
	mod  time.Time
	size int64
}

func stat(path string) (stamp, error) {
	if path == "" {
		return stamp{}, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{fi.ModTime(), fi.Size()}, nil
}

// loaded is the parsed content of Files at given stamps.
type loaded struct {
	stamps [3]stamp
	cert   *tls.Certificate
	pool   *x509.CertPool
}

// reloader keeps Files parsed, re-reading them when a file's modification
// time or size changes. A change that does not parse (a file caught half
// written) keeps the previous version until the next handshake tries again.
type reloader struct {
	f  Files
	mu sync.Mutex
	l  *loaded
}

func newReloader(f Files) (*reloader, error) {
	r := &reloader{f: f}
	if _, err := r.get(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *reloader) get() (*loaded, error) {
	var st [3]stamp
	var err error
	for i, p := range []string{r.f.CertFile, r.f.KeyFile, r.f.CAFile} {
		if st[i], err = stat(p); err != nil {
			break
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.l != nil && (err != nil || st == r.l.stamps) {
		return r.l, nil
	}
	if err != nil {
		return nil, err
	}
	l := &loaded{stamps: st}
	if r.f.CertFile != "" || r.f.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(r.f.CertFile, r.f.KeyFile)
		if err != nil {
			if r.l != nil {
				return r.l, nil
			}
			return nil, err
		}
		l.cert = &cert
	}
	if r.f.CAFile != "" {
		pem, err := os.ReadFile(r.f.CAFile)
		if err == nil {
			l.pool = x509.NewCertPool()
			if !l.pool.AppendCertsFromPEM(pem) {
				err = fmt.Errorf("%s holds no PEM certificate", r.f.CAFile)
			}
		}
		if err != nil {
			if r.l != nil {
				return r.l, nil
			}
			return nil, err
		}
	}
	r.l = l
	return l, nil
}

// ServerConfig returns the configuration of a TLS server for f: the
// certificate and the client CA bundle are re-read when they change.
// ALPN: a client offering only h2 (gRPC) gets h2; one that also offers
// http/1.1 (curl, browsers, Prometheus) gets http/1.1, which the port's
// HTTP side speaks.
func ServerConfig(f Files) (*tls.Config, error) {
	if f.CertFile == "" || f.KeyFile == "" {
		return nil, errors.New("a TLS server needs a certificate and a key file")
	}
	if f.ClientCertAuth && f.CAFile == "" {
		return nil, errors.New("client certificate authentication needs a trusted CA file")
	}
	r, err := newReloader(f)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			l, err := r.get()
			if err != nil {
				return nil, err
			}
			c := &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*l.cert},
				NextProtos:   alpn(hello.SupportedProtos),
			}
			if l.pool != nil {
				c.ClientCAs = l.pool
				c.ClientAuth = tls.VerifyClientCertIfGiven
			}
			if f.ClientCertAuth {
				c.ClientAuth = tls.RequireAndVerifyClientCert
			}
			return c, nil
		},
	}, nil
}

func alpn(offered []string) []string {
	switch {
	case slices.Contains(offered, "http/1.1"):
		return []string{"http/1.1"}
	case slices.Contains(offered, "h2"):
		return []string{"h2"}
	}
	return nil
}

// ClientConfig returns the configuration of a TLS client for f: the CA
// bundle verifies the server (system roots when empty) and the
// certificate, when given, is presented to servers that ask for one and
// re-read when it changes.
func ClientConfig(f Files) (*tls.Config, error) {
	if (f.CertFile == "") != (f.KeyFile == "") {
		return nil, errors.New("give both a certificate and a key file, or neither")
	}
	r, err := newReloader(f)
	if err != nil {
		return nil, err
	}
	l, _ := r.get()
	c := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: l.pool}
	if f.CertFile != "" {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			l, err := r.get()
			if err != nil {
				return nil, err
			}
			return l.cert, nil
		}
	}
	return c, nil
}
