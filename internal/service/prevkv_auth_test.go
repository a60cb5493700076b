package service

import (
	"testing"

	"google.golang.org/grpc/codes"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/wire"
)

// TestPrevKVNeedsRead: a write that returns the previous key-values reads
// them, so a user who may write keys but not read them is refused it on
// every path (as in etcd), while the same writes without prev_kv go
// through.
func TestPrevKVNeedsRead(t *testing.T) {
	n, a := authNode(t)
	root := login(t, a, "root", "rootpw")
	steps := []func() error{
		func() error {
			_, err := a.UserAdd(root, &kvdbv1.UserAddRequest{Name: "carol", Password: "carolpw"})
			return err
		},
		func() error { _, err := a.RoleAdd(root, &kvdbv1.RoleAddRequest{Name: "writer"}); return err },
		func() error {
			_, err := a.RoleGrantPermission(root, &kvdbv1.RoleGrantPermissionRequest{Name: "writer", Perm: &kvdbv1.Permission{
				PermType: kvdbv1.PermissionType_PERMISSION_TYPE_WRITE, Key: []byte("wo/"), RangeEnd: []byte("wo0")}})
			return err
		},
		func() error {
			_, err := a.UserGrantRole(root, &kvdbv1.UserGrantRoleRequest{User: "carol", Role: "writer"})
			return err
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("setup step %d: %v", i, err)
		}
	}
	for _, k := range []string{"wo/a", "wo/b", "wo/c", "wo/d"} {
		if _, err := n.kv.Put(root, &kvdbv1.PutRequest{Key: []byte(k), Value: []byte("secret")}); err != nil {
			t.Fatal(err)
		}
	}
	carol := login(t, a, "carol", "carolpw")
	txn := txnClient(n)
	putOp := func(prev bool) *kvdbv1.ExecuteOp {
		return &kvdbv1.ExecuteOp{Op: &kvdbv1.ExecuteOp_Put{Put: &kvdbv1.PutRequest{Key: []byte("wo/c"), Value: []byte("x"), PrevKv: prev}}}
	}
	delOp := func(prev bool) *kvdbv1.ExecuteOp {
		return &kvdbv1.ExecuteOp{Op: &kvdbv1.ExecuteOp_Delete{Delete: &kvdbv1.DeleteRequest{Key: []byte("wo/"), Prefix: true, PrevKv: prev}}}
	}
	for _, tc := range []struct {
		name string
		call func(prev bool) error
	}{
		{"Put", func(prev bool) error {
			_, err := n.kv.Put(carol, &kvdbv1.PutRequest{Key: []byte("wo/a"), Value: []byte("x"), PrevKv: prev})
			return err
		}},
		{"Execute put", func(prev bool) error {
			_, err := txn.Execute(carol, &kvdbv1.ExecuteRequest{Success: []*kvdbv1.ExecuteOp{putOp(prev)}})
			return err
		}},
		// Last: they delete the keys the others use.
		{"Execute prefix delete", func(prev bool) error {
			_, err := txn.Execute(carol, &kvdbv1.ExecuteRequest{Success: []*kvdbv1.ExecuteOp{delOp(prev)}})
			return err
		}},
		{"Delete prefix", func(prev bool) error {
			_, err := n.kv.Delete(carol, &kvdbv1.DeleteRequest{Key: []byte("wo/"), Prefix: true, PrevKv: prev})
			return err
		}},
	} {
		wantCode(t, tc.call(true), codes.PermissionDenied, `may not read`)
		if err := tc.call(false); err != nil {
			t.Fatalf("%s without prev_kv: %v", tc.name, err)
		}
	}

	r := dialRaw(t, n.addr)
	if resp := r.call(&wire.Request{Op: wire.OpAuth, ID: 1, Key: []byte("carol"), Value: []byte("carolpw")}); resp.Status != wire.StatusOK {
		t.Fatalf("AUTH carol: %v %s", resp.Status, resp.Payload)
	}
	for i, req := range []wire.Request{
		{Op: wire.OpPut, Flags: wire.FlagPrevKV, Key: []byte("wo/e"), Value: []byte("x")},
		{Op: wire.OpDelete, Flags: wire.FlagPrevKV | wire.FlagPrefix, Key: []byte("wo/")},
	} {
		req.ID = uint64(10 + i)
		if resp := r.call(&req); resp.Status != wire.StatusPermissionDenied {
			t.Errorf("binary %s with PREV_KV as a write-only user: %v %s, want PERMISSION_DENIED", req.Op, resp.Status, resp.Payload)
		}
		req.ID, req.Flags = uint64(20+i), req.Flags&^wire.FlagPrevKV
		if resp := r.call(&req); resp.Status != wire.StatusOK {
			t.Errorf("binary %s without PREV_KV: %v %s", req.Op, resp.Status, resp.Payload)
		}
	}
}
