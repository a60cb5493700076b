package client

import (
	"fmt"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/auth"
)

// TestClientAuthenticates: with authentication enabled, a Client with a
// user works on both protocols and one without gets UNAUTHENTICATED.
func TestClientAuthenticates(t *testing.T) {
	auth.SetBcryptCostForTests()
	_, addr := startNode(t)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	a := kvdbv1.NewAuthServiceClient(conn)
	ctx := ctxT(t)
	for _, u := range []string{"root", "bob"} {
		if _, err := a.UserAdd(ctx, &kvdbv1.UserAddRequest{Name: u, Password: "pw"}); err != nil {
			t.Fatal(err)
		}
	}
	// Credentials are accepted while authentication is still off.
	c0, err := New(ctx, Options{Endpoints: []string{addr}, Protocol: ProtocolBinary, Username: "root", Password: "pw"})
	if err != nil {
		t.Fatalf("binary client with credentials, auth off: %v", err)
	}
	c0.Close()
	if _, err := a.AuthEnable(ctx, &kvdbv1.AuthEnableRequest{}); err != nil {
		t.Fatal(err)
	}
	for _, proto := range []Protocol{ProtocolGRPC, ProtocolBinary} {
		t.Run(fmt.Sprint(proto), func(t *testing.T) {
			c, err := New(ctx, Options{Endpoints: []string{addr}, Protocol: proto, Username: "root", Password: "pw"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rev, err := c.Put(ctx, []byte("k"), []byte("v"))
			if err != nil {
				t.Fatalf("put as root: %v", err)
			}
			// Watches authenticate with the client's token too.
			if r := <-c.Watch(ctx, []byte("k"), WithRev(rev)); r.Err != nil || len(r.Events) != 1 || r.Events[0].KV.ModRevision != rev {
				t.Fatalf("watch as root: %+v", r)
			}
			if _, err := New(ctx, Options{Endpoints: []string{addr}, Protocol: proto, Username: "root", Password: "wrong"}); status.Code(err) != codes.Unauthenticated {
				t.Fatalf("wrong password: %v", err)
			}
		})
	}
	anon, err := New(ctx, Options{Endpoints: []string{addr}})
	if err == nil {
		_, err = anon.Put(ctx, []byte("k"), []byte("v"))
		anon.Close()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("client without credentials: %v", err)
	}
	// A watch without credentials ends with UNAUTHENTICATED.
	c, err := New(ctx, Options{Endpoints: []string{addr}, Username: "root", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.dial.tokens = nil
	if r := <-c.Watch(ctx, []byte("k")); Code(r.Err) != codes.Unauthenticated {
		t.Fatalf("watch without credentials: %+v", r)
	}
	// A watch the node refuses (bob may read nothing) ends with the code
	// its refusal names, not retried.
	bob, err := New(ctx, Options{Endpoints: []string{addr}, Username: "bob", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	if r := <-bob.Watch(ctx, []byte("k")); Code(r.Err) != codes.PermissionDenied {
		t.Fatalf("watch of a key bob may not read: %+v", r)
	}
}
