package client

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestLeasesAndSession runs the lease calls and a Session on both
// protocols: keys on a session's lease live while it does and go with
// Close; a key WithTTL expires on its own.
func TestLeasesAndSession(t *testing.T) {
	_, addr := startNode(t)
	for _, proto := range []Protocol{ProtocolGRPC, ProtocolBinary} {
		t.Run(fmt.Sprint(proto), func(t *testing.T) {
			ctx := ctxT(t)
			c, err := New(ctx, Options{Endpoints: []string{addr}, Protocol: proto, PoolSize: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			p := fmt.Sprintf("l%d/", proto)
			s, err := c.NewSession(ctx, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.PutWith(ctx, []byte(p+"member"), []byte("1"), WithLease(s.Lease())); err != nil {
				t.Fatal(err)
			}
			if _, err := c.PutWith(ctx, []byte(p+"short"), []byte("1"), WithTTL(time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			// The session outlives several TTLs (the key stays) — bounded.
			time.Sleep(2500 * time.Millisecond)
			if _, err := c.Get(ctx, []byte(p+"member")); err != nil {
				t.Fatalf("the session's key: %v", err)
			}
			select {
			case <-s.Done():
				t.Fatalf("session ended: %v", s.Err())
			default:
			}
			if _, err := c.Get(ctx, []byte(p+"short")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("the key with a TTL: %v", err)
			}
			info, err := c.TimeToLive(ctx, s.Lease(), true)
			if err != nil || info.GrantedTTL != time.Second || len(info.Keys) != 1 {
				t.Fatalf("TimeToLive = %+v, %v", info, err)
			}
			ids, err := c.Leases(ctx)
			if err != nil || len(ids) == 0 {
				t.Fatalf("Leases = %v, %v", ids, err)
			}
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Get(ctx, []byte(p+"member")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("after Close: %v", err)
			}
			if _, err := c.KeepAlive(ctx, s.Lease()); !errors.Is(err, ErrLeaseNotFound) {
				t.Fatalf("KeepAlive of a revoked lease: %v", err)
			}
			id, err := c.Grant(ctx, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if ttl, err := c.KeepAlive(ctx, id); err != nil || ttl != time.Minute {
				t.Fatalf("KeepAlive = %v, %v", ttl, err)
			}
			if err := c.Revoke(ctx, id); err != nil {
				t.Fatal(err)
			}
		})
	}
}
