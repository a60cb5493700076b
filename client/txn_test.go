package client

import (
	"errors"
	"fmt"
	"testing"
)

// TestTransactionsOnBothProtocols: read-your-writes, commit, a conflict
// that aborts, rollback, and compare-and-swap, over gRPC and the binary
// protocol (connection-scoped transactions).
func TestTransactionsOnBothProtocols(t *testing.T) {
	_, addr := startNode(t)
	for _, proto := range []Protocol{ProtocolGRPC, ProtocolBinary} {
		t.Run(fmt.Sprint(proto), func(t *testing.T) {
			ctx := ctxT(t)
			c, err := New(ctx, Options{Endpoints: []string{addr}, Protocol: proto, PoolSize: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			p := fmt.Sprintf("txn%d/", proto)
			if _, err := c.Put(ctx, []byte(p+"x"), []byte("1")); err != nil {
				t.Fatal(err)
			}
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			kv, err := tx.Get(ctx, []byte(p+"x"))
			if err != nil || string(kv.Value) != "1" {
				t.Fatalf("txn Get = %+v, %v", kv, err)
			}
			if err := tx.Put(ctx, []byte(p+"x"), []byte("2")); err != nil {
				t.Fatal(err)
			}
			if kv, err := tx.Get(ctx, []byte(p+"x")); err != nil || string(kv.Value) != "2" {
				t.Fatalf("read-your-writes = %+v, %v", kv, err)
			}
			if _, err := tx.Get(ctx, []byte(p+"none")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("txn Get missing: %v", err)
			}
			if err := tx.Delete(ctx, []byte(p+"gone")); err != nil {
				t.Fatal(err)
			}
			rev, err := tx.Commit(ctx)
			if err != nil || rev < 2 {
				t.Fatalf("Commit = %d, %v", rev, err)
			}
			if kv, err := c.Get(ctx, []byte(p+"x")); err != nil || string(kv.Value) != "2" || kv.ModRevision != rev {
				t.Fatalf("after commit: %+v, %v", kv, err)
			}
			// A write between the read and the commit aborts it.
			tx, err = c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Get(ctx, []byte(p+"x")); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Put(ctx, []byte(p+"x"), []byte("other")); err != nil {
				t.Fatal(err)
			}
			if err := tx.Put(ctx, []byte(p+"x"), []byte("mine")); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Commit(ctx); !errors.Is(err, ErrAborted) {
				t.Fatalf("conflicting Commit = %v, want ErrAborted", err)
			}
			if _, err := tx.Commit(ctx); err == nil {
				t.Fatal("a second Commit of the same transaction succeeded")
			}
			// Rollback discards.
			tx, err = c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := tx.Put(ctx, []byte(p+"rolled"), []byte("v")); err != nil {
				t.Fatal(err)
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Get(ctx, []byte(p+"rolled")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("rolled-back write visible: %v", err)
			}
			// Compare-and-swap.
			ok, err := c.CompareAndSwap(ctx, []byte(p+"x"), []byte("wrong"), []byte("z"))
			if err != nil || ok {
				t.Fatalf("CAS with the wrong value = %v, %v", ok, err)
			}
			ok, err = c.CompareAndSwap(ctx, []byte(p+"x"), []byte("other"), []byte("z"))
			if err != nil || !ok {
				t.Fatalf("CAS = %v, %v", ok, err)
			}
			if kv, err := c.Get(ctx, []byte(p+"x")); err != nil || string(kv.Value) != "z" {
				t.Fatalf("after CAS: %+v, %v", kv, err)
			}
		})
	}
}
