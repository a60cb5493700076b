package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/raftnode"
	"github.com/kvdb/kvdb/internal/service"
	"github.com/kvdb/kvdb/internal/service/servicetest"
	"github.com/kvdb/kvdb/internal/tlsutil"
	"github.com/kvdb/kvdb/internal/tlsutil/tlstest"
)

// startTLSNode serves an in-process standalone node on 127.0.0.1 whose port
// is TLS only (client certificates required when mtls) and returns its
// address once it leads, with the CA and a client certificate it trusts.
func startTLSNode(t *testing.T, mtls bool) (string, *tlstest.CA, tlstest.Pair) {
	t.Helper()
	ca := tlstest.NewCA(t, "kvdbctl-test-ca")
	server := ca.Issue(t, "node1", tlstest.Options{})
	client := ca.Issue(t, "client", tlstest.Options{})
	files := tlsutil.Files{CertFile: server.CertFile, KeyFile: server.KeyFile}
	if mtls {
		files.CAFile, files.ClientCertAuth = ca.CAFile, true
	}
	tlsCfg, err := tlsutil.ServerConfig(files)
	if err != nil {
		t.Fatal(err)
	}
	_, addr := servicetest.Serve(t, service.Config{
		NodeID: "node1", MemberID: 1, ClusterID: 42, DataDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Raft:   raftnode.Config{TickInterval: 10 * time.Millisecond},
		TLS:    tlsCfg,
	})
	clientCfg, err := tlsutil.ClientConfig(tlsutil.Files{CAFile: ca.CAFile, CertFile: client.CertFile, KeyFile: client.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(clientCfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for range 1000 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := kvdbv1.NewAdminServiceClient(conn).Status(ctx, &kvdbv1.StatusRequest{})
		cancel()
		if err == nil && st.GetIsLeader() {
			return addr, ca, client
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the TLS node did not lead")
	return "", nil, tlstest.Pair{}
}

// TestPlaintextToTLSNode: kvdbctl without --cacert reaching a TLS-only node
// says the node speaks TLS and which flags to pass, over both transports,
// rather than that it does not speak gRPC. With the flags it works.
func TestPlaintextToTLSNode(t *testing.T) {
	for _, mtls := range []bool{false, true} {
		addr, ca, client := startTLSNode(t, mtls)
		tests := []struct {
			name string
			args []string
		}{
			{"grpc status", []string{"--address", addr, "status"}},
			{"grpc get", []string{"--address", addr, "get", "a"}},
			{"binary get", []string{"--address", addr, "--protocol", "binary", "get", "a"}},
			{"endpoints", []string{"--endpoints", addr + "," + addr, "get", "a"}},
			{"bench", []string{"--address", addr, "bench", "--total", "1"}},
		}
		for _, tt := range tests {
			name := tt.name
			if mtls {
				name += " client certs"
			}
			t.Run(name, func(t *testing.T) {
				_, errOut, code := runCLI(t, nil, "", append([]string{"--timeout", "5s"}, tt.args...)...)
				if code != 1 || !strings.Contains(errOut, "speaks TLS: pass --cacert") || !strings.Contains(errOut, "--cert and --key") {
					t.Fatalf("exit %d: %s", code, errOut)
				}
				if strings.Contains(errOut, "does not speak gRPC") {
					t.Errorf("says the node does not speak gRPC: %s", errOut)
				}
			})
		}
		t.Run("with --cacert", func(t *testing.T) {
			args := []string{"--address", addr, "--cacert", ca.CAFile}
			if mtls {
				args = append(args, "--cert", client.CertFile, "--key", client.KeyFile)
			}
			out, errOut, code := runCLI(t, nil, "", append(args, "put", "a", "1")...)
			if code != 0 {
				t.Fatalf("exit %d: %s%s", code, out, errOut)
			}
		})
	}
}
