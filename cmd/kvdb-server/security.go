package main

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"

	"github.com/kvdb/kvdb/internal/raftnode"
	"github.com/kvdb/kvdb/internal/service"
	"github.com/kvdb/kvdb/internal/tlsutil"
)

// securityConfig holds the flags of client TLS, peer authentication and
// protected mode (SECURITY.md).
type securityConfig struct {
	// Client side of the port: etcd's flag names.
	CertFile, KeyFile, TrustedCAFile string
	ClientCertAuth                   bool
	// Peers.
	PeerAddress, AdvertisePeer                     string
	PeerCertFile, PeerKeyFile, PeerTrustedCAFile   string
	PeerClientCertAuth                             bool
	PeerSecretFile                                 string
	InsecurePeers                                  bool
	ProtectedMode                                  bool
	InitialClusterToken                            string
	peerSecret                                     []byte
	clientTLS, peerServerTLS, peerDialTLS, joinTLS *tls.Config
}

func (c *securityConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.CertFile, "cert-file", "", "TLS certificate for clients: every protocol on -address (gRPC, binary, HTTP) becomes TLS only; reloaded when it changes")
	fs.StringVar(&c.KeyFile, "key-file", "", "TLS key of -cert-file")
	fs.StringVar(&c.TrustedCAFile, "trusted-ca-file", "", "CA bundle that verifies client certificates (with -client-cert-auth)")
	fs.BoolVar(&c.ClientCertAuth, "client-cert-auth", false, "require clients to present a certificate signed by -trusted-ca-file (mTLS)")
	fs.StringVar(&c.PeerAddress, "peer-address", "", "listen address for raft traffic from peers, e.g. :7001; the client port then never serves it. Unset: the one-port form, peers use -address and must authenticate with -peer-secret-file")
	fs.StringVar(&c.AdvertisePeer, "advertise-peer-address", "", "address peers use to reach -peer-address; default: -peer-address, with the node id as host when it has none")
	fs.StringVar(&c.PeerCertFile, "peer-cert-file", "", "TLS certificate of this member for peer traffic (server and client side); its CommonName or a DNS name must be the -node-id; needs -peer-address")
	fs.StringVar(&c.PeerKeyFile, "peer-key-file", "", "TLS key of -peer-cert-file")
	fs.StringVar(&c.PeerTrustedCAFile, "peer-trusted-ca-file", "", "CA bundle that verifies peers' certificates")
	fs.BoolVar(&c.PeerClientCertAuth, "peer-client-cert-auth", false, "require peers to present a certificate signed by -peer-trusted-ca-file that names the sending member (peer mTLS)")
	fs.StringVar(&c.PeerSecretFile, "peer-secret-file", "", "file holding the shared cluster secret peers authenticate with (at least 16 bytes; never logged)")
	fs.BoolVar(&c.InsecurePeers, "insecure-peers", false, "let a raft cluster member run without peer authentication: anyone who can reach its peer port can write into the raft log. Trusted networks only")
	fs.BoolVar(&c.ProtectedMode, "protected-mode", true, "with no TLS for clients and authentication disabled, accept clients only from loopback")
	fs.StringVar(&c.InitialClusterToken, "initial-cluster-token", "", "mixed into the cluster id of a new multi-member cluster so that separate clusters with the same members get different ids")
}

// check validates the security flags once the rest of c is parsed, reads
// the secret and builds the TLS configurations.
func (c *securityConfig) check(enableRaft bool, nodeID string) error {
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("-cert-file and -key-file go together")
	}
	if c.ClientCertAuth && (c.CertFile == "" || c.TrustedCAFile == "") {
		return errors.New("-client-cert-auth needs -cert-file, -key-file and -trusted-ca-file")
	}
	if c.TrustedCAFile != "" && c.CertFile == "" {
		return errors.New("-trusted-ca-file needs -cert-file and -key-file")
	}
	peerTLS := c.PeerCertFile != "" || c.PeerKeyFile != "" || c.PeerTrustedCAFile != "" || c.PeerClientCertAuth
	if !enableRaft && (peerTLS || c.PeerAddress != "" || c.PeerSecretFile != "" || c.InsecurePeers) {
		return errors.New("the -peer-* and -insecure-peers flags need -enable-raft=true (a standalone node accepts no peer traffic)")
	}
	if peerTLS && (c.PeerCertFile == "" || c.PeerKeyFile == "" || c.PeerTrustedCAFile == "") {
		return errors.New("peer TLS needs -peer-cert-file, -peer-key-file and -peer-trusted-ca-file together")
	}
	if peerTLS && c.PeerAddress == "" {
		return errors.New("peer certificates need their own listener: give -peer-address (the one-port form authenticates peers with -peer-secret-file)")
	}
	if c.PeerSecretFile != "" {
		b, err := os.ReadFile(c.PeerSecretFile)
		if err != nil {
			return fmt.Errorf("-peer-secret-file: %w", err)
		}
		c.peerSecret = bytes.TrimSpace(b)
		if len(c.peerSecret) < 16 {
			return errors.New("-peer-secret-file: the secret must be at least 16 bytes")
		}
	}
	if enableRaft && !c.peersAuthenticated() && !c.InsecurePeers {
		return errors.New("a raft cluster member needs peer authentication: -peer-cert-file, -peer-key-file, " +
			"-peer-trusted-ca-file and -peer-client-cert-auth (mTLS, with -peer-address), or -peer-secret-file; " +
			"-insecure-peers runs without it, for trusted networks only")
	}
	var err error
	if c.CertFile != "" {
		files := tlsutil.Files{CertFile: c.CertFile, KeyFile: c.KeyFile, CAFile: c.TrustedCAFile, ClientCertAuth: c.ClientCertAuth}
		if c.clientTLS, err = tlsutil.ServerConfig(files); err != nil {
			return fmt.Errorf("client TLS: %w", err)
		}
		// Joining (and, in the one-port form, raft) dials other members'
		// client ports: their certificates are checked against the same CA.
		if c.joinTLS, err = tlsutil.ClientConfig(files); err != nil {
			return fmt.Errorf("client TLS: %w", err)
		}
	}
	if peerTLS {
		files := tlsutil.Files{CertFile: c.PeerCertFile, KeyFile: c.PeerKeyFile, CAFile: c.PeerTrustedCAFile, ClientCertAuth: c.PeerClientCertAuth}
		if c.peerServerTLS, err = tlsutil.ServerConfig(files); err != nil {
			return fmt.Errorf("peer TLS: %w", err)
		}
		if c.peerDialTLS, err = tlsutil.ClientConfig(files); err != nil {
			return fmt.Errorf("peer TLS: %w", err)
		}
	} else if c.PeerAddress == "" {
		c.peerDialTLS = c.joinTLS // the one-port form dials client ports
	}
	if c.PeerAddress != "" && c.AdvertisePeer == "" {
		if c.AdvertisePeer, err = advertiseFor(c.PeerAddress, nodeID); err != nil {
			return fmt.Errorf("-peer-address: %w", err)
		}
	}
	return nil
}

// peersAuthenticated: peers prove who they are, by certificate or secret.
func (c *securityConfig) peersAuthenticated() bool {
	return (c.PeerCertFile != "" && c.PeerClientCertAuth) || len(c.peerSecret) > 0
}

// peerConfig is the service's view of the peer flags.
func (c *securityConfig) peerConfig(enableRaft bool) service.PeerConfig {
	return service.PeerConfig{
		Enabled:     enableRaft,
		OwnListener: c.PeerAddress != "",
		ServerTLS:   c.peerServerTLS,
		Security: raftnode.PeerSecurity{
			TLS:                c.peerDialTLS,
			RequireCertificate: c.PeerCertFile != "" && c.PeerClientCertAuth,
			Secret:             c.peerSecret,
		},
	}
}

// warn logs, at every start, what the security flags leave open.
func (c *securityConfig) warn(log *slog.Logger, enableRaft bool) {
	if enableRaft && !c.peersAuthenticated() {
		log.Warn("-insecure-peers: raft traffic from peers is not authenticated; anyone who can reach the peer port can write into the raft log")
	}
	if enableRaft && c.PeerAddress != "" && c.peerServerTLS == nil {
		log.Warn("peer traffic is not encrypted (no -peer-cert-file): the peer secret authenticates streams but does not hide them")
	}
	if c.clientTLS == nil && !c.ProtectedMode {
		log.Warn("-protected-mode=false without TLS: every client that can reach the port has full access")
	}
}

// advertiseFor is addr with the node id as host when addr has none.
func advertiseFor(addr, nodeID string) (string, error) {
	host, port, err := splitHostPort(addr)
	if err != nil {
		return "", err
	}
	if host == "" || host == "0.0.0.0" || host == "::" || host == "[::]" {
		host = nodeID
	}
	return host + ":" + port, nil
}

// configuredClusterID is the cluster id the flags configure: none (0) for
// a single member whose data dir holds state, which keeps the id it
// recorded, since a new random one would only differ from it; otherwise
// newClusterID. A cluster's initial members derive theirs from -peers,
// and a restart compares it with the recorded one.
func configuredClusterID(ids []uint64, token string, hasState bool) uint64 {
	if hasState && len(ids) <= 1 {
		return 0
	}
	return newClusterID(ids, token)
}

// newClusterID is the id of a cluster this node creates: random for a
// single member, else derived from the members and -initial-cluster-token
// so that every initial member computes the same one.
func newClusterID(ids []uint64, token string) uint64 {
	if len(ids) <= 1 {
		var b [8]byte
		for {
			_, _ = rand.Read(b[:])
			if id := binary.BigEndian.Uint64(b[:]); id != 0 {
				return id
			}
		}
	}
	id := service.ClusterID(ids)
	if token == "" {
		return id
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%x:%s", id, token)
	if v := h.Sum64(); v != 0 {
		return v
	}
	return id
}
