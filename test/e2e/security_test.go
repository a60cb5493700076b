package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestRaftMemberNeedsPeerAuthentication: a cluster member without peer
// authentication refuses to start; with -insecure-peers it starts and says
// what that means.
func TestRaftMemberNeedsPeerAuthentication(t *testing.T) {
	server, _ := binaries(t)
	out, err := runCombined(server, "-node-id=n1", "-enable-raft", "-address="+freeAddr(t), "-data-dir="+t.TempDir())
	if err == nil || !strings.Contains(out, "-insecure-peers") || !strings.Contains(out, "-peer-secret-file") {
		t.Fatalf("a member without peer authentication: err %v, output %q", err, out)
	}
	out, err = runCombined(server, "-node-id=n1", "-enable-raft", "-address="+freeAddr(t), "-data-dir="+t.TempDir(), "-peer-cert-file=x.pem", "-peer-key-file=x-key.pem", "-peer-trusted-ca-file=ca.pem")
	if err == nil || !strings.Contains(out, "-peer-address") {
		t.Fatalf("peer certificates in the one-port form: err %v, output %q", err, out)
	}
	addr := freeAddr(t)
	p := startServer(t, addr, t.TempDir(), "-enable-raft", "-insecure-peers")
	if !strings.Contains(p.logs(), "-insecure-peers: raft traffic from peers is not authenticated") {
		t.Fatalf("no warning for -insecure-peers:\n%s", p.logs())
	}
}

// netns runs ip with args, failing the test on error.
func netns(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestProtectedModeOverVeth: a node in a network namespace of its own,
// reached from a second namespace over a veth pair the test creates. Both
// namespaces are new and are deleted afterwards: no traffic touches this
// machine's own interfaces. Skipped where namespaces cannot be created.
func TestProtectedModeOverVeth(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip command")
	}
	server, ctlBin := binaries(t)
	suffix := fmt.Sprintf("%d", os.Getpid()%100000)
	srvNS, cliNS := "kvdbs"+suffix, "kvdbc"+suffix
	if out, err := exec.Command("ip", "netns", "add", srvNS).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace here: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", srvNS).Run() })
	netns(t, "netns", "add", cliNS)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", cliNS).Run() })
	netns(t, "link", "add", "kvs"+suffix, "netns", srvNS, "type", "veth", "peer", "name", "kvc"+suffix, "netns", cliNS)
	netns(t, "-n", srvNS, "addr", "add", "10.213.7.1/30", "dev", "kvs"+suffix)
	netns(t, "-n", cliNS, "addr", "add", "10.213.7.2/30", "dev", "kvc"+suffix)
	for _, ns := range []string{srvNS, cliNS} {
		netns(t, "-n", ns, "link", "set", "lo", "up")
	}
	netns(t, "-n", srvNS, "link", "set", "kvs"+suffix, "up")
	netns(t, "-n", cliNS, "link", "set", "kvc"+suffix, "up")

	// in runs kvdbctl in namespace ns against addr.
	in := func(ns, addr string, args ...string) (string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, ctlBin, "--address", addr, "--timeout", "3s"}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("kvdbctl in %s: %v", ns, err)
		}
		return out.String(), code
	}
	start := func(port string, extra ...string) {
		args := append([]string{"netns", "exec", srvNS, server, "-node-id=node1", "-address=0.0.0.0:" + port, "-data-dir=" + t.TempDir(), "-heartbeat-interval=20ms"}, extra...)
		cmd := exec.Command("ip", args...)
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &lockedWriter{w: &logs}, &lockedWriter{w: &logs}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if _, code := in(srvNS, "127.0.0.1:"+port, "health"); code == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("server in %s not ready", srvNS)
			}
		}
	}

	start("18080")
	if out, code := in(srvNS, "127.0.0.1:18080", "put", "k", "v"); code != 0 {
		t.Fatalf("loopback client in protected mode: exit %d: %s", code, out)
	}
	for _, proto := range []string{"grpc", "binary"} {
		out, code := in(cliNS, "10.213.7.1:18080", "--protocol", proto, "get", "k")
		if code == 0 || !strings.Contains(out, "protected mode") || !strings.Contains(out, "-protected-mode=false") {
			t.Fatalf("remote %s client in protected mode: exit %d, output %q", proto, code, out)
		}
	}
	start("18081", "-protected-mode=false")
	if out, code := in(cliNS, "10.213.7.1:18081", "put", "k", "v"); code != 0 {
		t.Fatalf("remote client with -protected-mode=false: exit %d: %s", code, out)
	}
}
