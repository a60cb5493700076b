package client

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kvdb/kvdb/internal/clustertest"
)

// TestWritesFollowTheNewLeader: when the node a Client sends to stops, a
// write fails with UNAVAILABLE and is not sent again, but the Client looks
// for the leader among its endpoints, so later writes, synchronous,
// asynchronous and pipelined, on both transports, succeed on the new one.
func TestWritesFollowTheNewLeader(t *testing.T) {
	put := map[string]func(ctx context.Context, c *Client, key []byte) error{
		"Put": func(ctx context.Context, c *Client, key []byte) error {
			_, err := c.Put(ctx, key, []byte("v"))
			return err
		},
		"PutAsync": func(ctx context.Context, c *Client, key []byte) error {
			return c.PutAsync(ctx, key, []byte("v")).Err(ctx)
		},
		"Pipeline": func(ctx context.Context, c *Client, key []byte) error {
			p := c.Pipeline()
			f := p.PutAsync(ctx, key, []byte("v"))
			p.Flush()
			return f.Err(ctx)
		},
		"Batch": func(ctx context.Context, c *Client, key []byte) error {
			_, err := c.Batch(ctx, []BatchOp{{Key: key, Value: []byte("v")}})
			return err
		},
	}
	for _, proto := range []Protocol{ProtocolGRPC, ProtocolBinary} {
		for name, put := range put {
			t.Run(fmt.Sprintf("%s %s", map[Protocol]string{ProtocolGRPC: "grpc", ProtocolBinary: "binary"}[proto], name), func(t *testing.T) {
				cl := clustertest.Start(t, 3)
				lead := cl.Leader()
				ctx := ctxT(t)
				c, err := New(ctx, Options{Endpoints: cl.Addrs, Protocol: proto, PoolSize: 2})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if c.Endpoint() != cl.Addrs[lead] {
					t.Fatalf("client on %s, the leader is %s", c.Endpoint(), cl.Addrs[lead])
				}
				if err := put(ctx, c, []byte("before")); err != nil {
					t.Fatal(err)
				}
				cl.Stop(lead)
				var failed int
				var lastErr error
				for i := range 200 {
					key := fmt.Appendf(nil, "after/%d", i)
					if lastErr = put(ctx, c, key); lastErr == nil {
						break
					}
					failed++
					time.Sleep(20 * time.Millisecond)
				}
				if lastErr != nil {
					t.Fatalf("no write succeeded after the leader stopped (%d failed; client on %s): %v", failed, c.Endpoint(), lastErr)
				}
				if c.Endpoint() == cl.Addrs[lead] {
					t.Errorf("the client still sends to the stopped node %s", c.Endpoint())
				}
				t.Logf("%d writes failed during the switch", failed)
			})
		}
	}
}
