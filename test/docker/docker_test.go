//go:build docker

// Package docker tests the compose cluster: partitions with docker network
// disconnect, container kills and restarts. Run with make test-docker
// (needs a Docker engine and docker-compose; builds the image first).
package docker

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	grpcstatus "google.golang.org/grpc/status"

	kvclient "github.com/kvdb/kvdb/client"
	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

// certsDir holds the certificates of the run, made by devCerts.
var certsDir string

// devCerts makes fresh development certificates for this run (the compose
// file mounts KVDB_CERTS_DIR at /certs): client TLS with client
// certificates, and peer mTLS between the nodes.
func devCerts(t *testing.T) {
	t.Helper()
	certsDir = t.TempDir()
	run(t, "go", "run", "./test/devcerts", "-dir", certsDir, "-nodes", strings.Join(hosts, ","))
	t.Setenv("KVDB_CERTS_DIR", certsDir)
}

const network = "kvdb-net"

var (
	names = []string{"kvdb-node1", "kvdb-node2", "kvdb-node3"}
	hosts = []string{"node1", "node2", "node3"}
	addrs = []string{"127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"}
)

func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = root()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

type node struct {
	kv    kvdbv1.KVServiceClient
	admin kvdbv1.AdminServiceClient
	auth  kvdbv1.AuthServiceClient
}

// rootPassword is the root user's password in the compose cluster, where
// the test enables authentication before anything else.
const rootPassword = "compose-root-pw"

// dialAll connects to every node over TLS with the client certificate and,
// when user is set, authenticates as that user.
func dialAll(t *testing.T, user, password string) []node {
	out := make([]node, len(addrs))
	for i, a := range addrs {
		tlsCfg, err := kvclient.LoadTLS(filepath.Join(certsDir, "ca.pem"), filepath.Join(certsDir, "client.pem"), filepath.Join(certsDir, "client-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg))}
		if user != "" {
			opts = append(opts, grpc.WithChainUnaryInterceptor(kvclient.AuthInterceptor(user, password)))
		}
		conn, err := grpc.NewClient(a, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		out[i] = node{kvdbv1.NewKVServiceClient(conn), kvdbv1.NewAdminServiceClient(conn), kvdbv1.NewAuthServiceClient(conn)}
	}
	return out
}

func status(n node) (*kvdbv1.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return n.admin.Status(ctx, &kvdbv1.StatusRequest{})
}

// waitLeader returns the index of a node among those in alive that leads.
func waitLeader(t *testing.T, nodes []node, alive []int) int {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, i := range alive {
			if st, err := status(nodes[i]); err == nil && st.GetIsLeader() {
				return i
			}
		}
	}
	t.Fatalf("no leader among %v", alive)
	return -1
}

// put writes k=v, retrying UNAVAILABLE (no leader known yet) for a few
// seconds as a client would.
func put(n node, k, v string) error {
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err = n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte(k), Value: []byte(v)})
		cancel()
		if grpcstatus.Code(err) != codes.Unavailable {
			return err
		}
	}
	return err
}

// putOnce writes without retrying.
func putOnce(n node, k, v string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := n.kv.Put(ctx, &kvdbv1.PutRequest{Key: []byte(k), Value: []byte(v)})
	return err
}

// waitConverged waits until all nodes report the same applied index and
// store revision.
func waitConverged(t *testing.T, nodes []node) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		same := true
		last = ""
		var first *kvdbv1.StatusResponse
		for i, n := range nodes {
			st, err := status(n)
			if err != nil {
				same = false
				last += fmt.Sprintf("%s: %v; ", names[i], err)
				continue
			}
			last += fmt.Sprintf("%s: applied=%d rev=%d leader=%s; ", names[i], st.GetAppliedIndex(), st.GetHeader().GetRevision(), st.GetLeaderId())
			if first == nil {
				first = st
			} else if st.GetAppliedIndex() != first.GetAppliedIndex() || st.GetHeader().GetRevision() != first.GetHeader().GetRevision() || st.GetLeaderId() != first.GetLeaderId() {
				same = false
			}
		}
		if same {
			return
		}
	}
	t.Fatalf("cluster did not converge: %s", last)
}

func TestComposeCluster(t *testing.T) {
	devCerts(t)
	run(t, "docker-compose", "down", "-v")
	run(t, "docker-compose", "up", "-d")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "docker-compose", "down", "-v").CombinedOutput()
		if err != nil {
			t.Logf("compose down: %v\n%s", err, out)
		}
	})
	all := []int{0, 1, 2}
	// Authentication on first: root, then auth enable, through the leader;
	// from then on every call below authenticates as root.
	anon := dialAll(t, "", "")
	first := waitLeader(t, anon, all)
	actx, acancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer acancel()
	if _, err := anon[first].auth.UserAdd(actx, &kvdbv1.UserAddRequest{Name: "root", Password: rootPassword}); err != nil {
		t.Fatalf("user add root: %v", err)
	}
	if _, err := anon[first].auth.AuthEnable(actx, &kvdbv1.AuthEnableRequest{}); err != nil {
		t.Fatalf("auth enable: %v", err)
	}
	// Every node refuses anonymous writes once it has applied the change
	// (a follower may apply it a moment after the leader answered).
	for _, i := range all {
		var err error
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if err = putOnce(anon[i], "anonymous", "v"); grpcstatus.Code(err) == codes.Unauthenticated {
				break
			}
		}
		if grpcstatus.Code(err) != codes.Unauthenticated {
			t.Fatalf("anonymous put on %s with auth enabled: %v", names[i], err)
		}
	}
	nodes := dialAll(t, "root", rootPassword)
	leader := waitLeader(t, nodes, all)
	for i := 0; i < 20; i++ {
		if err := put(nodes[i%3], fmt.Sprintf("before-%d", i), "v"); err != nil {
			t.Fatalf("write before partition: %v", err)
		}
	}
	// The REPL (the README's `./client -address` form) works inside the container.
	out := run(t, "docker", "exec", "-i", names[0], "kvdbctl", "-address", "localhost:8080",
		"--cacert", "/certs/ca.pem", "--cert", "/certs/client.pem", "--key", "/certs/client-key.pem",
		"--user", "root:"+rootPassword, "get", "before-0")
	if strings.TrimSpace(out) != "v" {
		t.Fatalf("kvdbctl in container: %q", out)
	}

	// Cut the leader off; the other two elect a leader and take writes.
	before, err := status(nodes[leader])
	if err != nil {
		t.Fatal(err)
	}
	run(t, "docker", "network", "disconnect", network, names[leader])
	var rest []int
	for _, i := range all {
		if i != leader {
			rest = append(rest, i)
		}
	}
	newLeader := waitLeader(t, nodes, rest)
	t.Logf("partitioned %s; %s leads", names[leader], names[newLeader])
	for i := 0; i < 20; i++ {
		if err := put(nodes[newLeader], fmt.Sprintf("during-%d", i), "v"); err != nil {
			t.Fatalf("write during partition: %v", err)
		}
	}
	// The old leader cannot commit alone.
	if err := putOnce(nodes[leader], "isolated", "v"); err == nil {
		t.Fatal("the partitioned old leader acknowledged a write")
	}
	run(t, "docker", "network", "connect", "--alias", hosts[leader], network, names[leader])
	waitConverged(t, nodes)
	// The old leader stepped down: it follows a later term's leader.
	if st, err := status(nodes[leader]); err != nil || st.GetTerm() <= before.GetTerm() {
		t.Fatalf("old leader after heal: %v %v (term before %d)", st, err, before.GetTerm())
	}

	// Kill a node, write, restart it: it catches up.
	victim := (newLeader + 1) % 3
	run(t, "docker", "kill", names[victim])
	for i := 0; i < 20; i++ {
		k := fmt.Sprintf("after-kill-%d", i)
		if err := put(nodes[(victim+1)%3], k, "v"); err != nil {
			t.Fatalf("write with %s down: %v", names[victim], err)
		}
	}
	run(t, "docker", "start", names[victim])
	waitConverged(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, k := range []string{"before-19", "during-19", "after-kill-19"} {
		resp, err := nodes[victim].kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte(k), Consistency: kvdbv1.Consistency_CONSISTENCY_SERIALIZABLE})
		if err != nil || string(resp.GetKv().GetValue()) != "v" {
			t.Fatalf("%s on restarted %s: %v %v", k, names[victim], resp, err)
		}
	}
}
