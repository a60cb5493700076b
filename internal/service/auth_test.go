package service

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/auth"
	"github.com/kvdb/kvdb/internal/core"
	"github.com/kvdb/kvdb/internal/wire"
)

func init() { auth.SetBcryptCostForTests() }

// authNode starts a node and sets up auth: root (password "rootpw") and
// alice ("alicepw", role app: readwrite on the prefix "app/"), auth on.
func authNode(t *testing.T) (*testNode, kvdbv1.AuthServiceClient) {
	t.Helper()
	n := startNode(t, t.TempDir(), nil)
	return n, setUpAuth(t, n)
}

// setUpAuth sets up authNode's users and roles on n and enables auth.
func setUpAuth(t *testing.T, n *testNode) kvdbv1.AuthServiceClient {
	t.Helper()
	a := kvdbv1.NewAuthServiceClient(n.conn)
	ctx := ctxT(t)
	steps := []func() error{
		func() error {
			_, err := a.UserAdd(ctx, &kvdbv1.UserAddRequest{Name: "root", Password: "rootpw"})
			return err
		},
		func() error {
			_, err := a.UserAdd(ctx, &kvdbv1.UserAddRequest{Name: "alice", Password: "alicepw"})
			return err
		},
		func() error { _, err := a.RoleAdd(ctx, &kvdbv1.RoleAddRequest{Name: "app"}); return err },
		func() error {
			_, err := a.RoleGrantPermission(ctx, &kvdbv1.RoleGrantPermissionRequest{Name: "app", Perm: &kvdbv1.Permission{
				PermType: kvdbv1.PermissionType_PERMISSION_TYPE_READWRITE, Key: []byte("app/"), RangeEnd: []byte("app0")}})
			return err
		},
		func() error {
			_, err := a.UserGrantRole(ctx, &kvdbv1.UserGrantRoleRequest{User: "alice", Role: "app"})
			return err
		},
		func() error { _, err := a.AuthEnable(ctx, &kvdbv1.AuthEnableRequest{}); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("auth setup step %d: %v", i, err)
		}
	}
	return a
}

func login(t *testing.T, a kvdbv1.AuthServiceClient, user, password string) context.Context {
	t.Helper()
	resp, err := a.Authenticate(ctxT(t), &kvdbv1.AuthenticateRequest{Name: user, Password: password})
	if err != nil {
		t.Fatalf("authenticate %s: %v", user, err)
	}
	return metadata.AppendToOutgoingContext(ctxT(t), "token", resp.GetToken())
}

// sampleRequests is a well-formed request for every unary RPC; the keys lie
// outside alice's "app/" prefix. A new RPC without an entry fails
// TestEveryRPCIsChecked: add its request and its permission class.
var sampleRequests = map[string]proto.Message{
	"/kvdb.v1.KVService/Get":    &kvdbv1.GetRequest{Key: []byte("other")},
	"/kvdb.v1.KVService/Put":    &kvdbv1.PutRequest{Key: []byte("other"), Value: []byte("v")},
	"/kvdb.v1.KVService/Delete": &kvdbv1.DeleteRequest{Key: []byte("other")},
	"/kvdb.v1.KVService/Range":  &kvdbv1.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z")},
	"/kvdb.v1.KVService/Batch": &kvdbv1.BatchRequest{Ops: []*kvdbv1.BatchOp{
		{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: []byte("app/1"), Value: []byte("v")}}},
		{Op: &kvdbv1.BatchOp_Put{Put: &kvdbv1.BatchPut{Key: []byte("other"), Value: []byte("v")}}}}},
	"/kvdb.v1.TxnService/Begin":    &kvdbv1.BeginRequest{},
	"/kvdb.v1.TxnService/Get":      &kvdbv1.TxnServiceGetRequest{TxnId: "t", Key: []byte("other")},
	"/kvdb.v1.TxnService/Range":    &kvdbv1.TxnServiceRangeRequest{TxnId: "t", Key: []byte("a"), RangeEnd: []byte("z")},
	"/kvdb.v1.TxnService/Put":      &kvdbv1.TxnServicePutRequest{TxnId: "t", Key: []byte("other"), Value: []byte("v")},
	"/kvdb.v1.TxnService/Delete":   &kvdbv1.TxnServiceDeleteRequest{TxnId: "t", Key: []byte("other")},
	"/kvdb.v1.TxnService/Commit":   &kvdbv1.CommitRequest{TxnId: "t"},
	"/kvdb.v1.TxnService/Rollback": &kvdbv1.RollbackRequest{TxnId: "t"},
	"/kvdb.v1.TxnService/Execute": &kvdbv1.ExecuteRequest{Compares: []*kvdbv1.Compare{{Key: []byte("other"),
		Operator: kvdbv1.CompareOperator_COMPARE_OPERATOR_EQUAL, Operand: &kvdbv1.Compare_Version{Version: 0}}}},
	"/kvdb.v1.AdminService/Status":            &kvdbv1.StatusRequest{},
	"/kvdb.v1.AdminService/Stats":             &kvdbv1.StatsRequest{},
	"/kvdb.v1.AdminService/MemberList":        &kvdbv1.MemberListRequest{},
	"/kvdb.v1.AdminService/MemberAdd":         &kvdbv1.MemberAddRequest{Name: "n9", Address: "127.0.0.1:1"},
	"/kvdb.v1.AdminService/MemberRemove":      &kvdbv1.MemberRemoveRequest{Name: "nobody"},
	"/kvdb.v1.AdminService/TransferLeader":    &kvdbv1.TransferLeaderRequest{Name: "nobody"},
	"/kvdb.v1.AuthService/Authenticate":       &kvdbv1.AuthenticateRequest{Name: "alice", Password: "alicepw"},
	"/kvdb.v1.AuthService/AuthEnable":         &kvdbv1.AuthEnableRequest{},
	"/kvdb.v1.AuthService/AuthDisable":        &kvdbv1.AuthDisableRequest{},
	"/kvdb.v1.AuthService/AuthStatus":         &kvdbv1.AuthStatusRequest{},
	"/kvdb.v1.AuthService/UserAdd":            &kvdbv1.UserAddRequest{Name: "bob", Password: "bobpw"},
	"/kvdb.v1.AuthService/UserGet":            &kvdbv1.UserGetRequest{Name: "alice"},
	"/kvdb.v1.AuthService/UserList":           &kvdbv1.UserListRequest{},
	"/kvdb.v1.AuthService/UserDelete":         &kvdbv1.UserDeleteRequest{Name: "nobody"},
	"/kvdb.v1.AuthService/UserChangePassword": &kvdbv1.UserChangePasswordRequest{Name: "nobody", Password: "x"},
	"/kvdb.v1.AuthService/UserGrantRole":      &kvdbv1.UserGrantRoleRequest{User: "alice", Role: "nope"},
	"/kvdb.v1.AuthService/UserRevokeRole":     &kvdbv1.UserRevokeRoleRequest{Name: "alice", Role: "nope"},
	"/kvdb.v1.AuthService/RoleAdd":            &kvdbv1.RoleAddRequest{Name: "extra"},
	"/kvdb.v1.AuthService/RoleGet":            &kvdbv1.RoleGetRequest{Role: "app"},
	"/kvdb.v1.AuthService/RoleList":           &kvdbv1.RoleListRequest{},
	"/kvdb.v1.AuthService/RoleDelete":         &kvdbv1.RoleDeleteRequest{Role: "nope"},
	"/kvdb.v1.AuthService/RoleGrantPermission": &kvdbv1.RoleGrantPermissionRequest{Name: "nope", Perm: &kvdbv1.Permission{
		PermType: kvdbv1.PermissionType_PERMISSION_TYPE_READ, Key: []byte("x")}},
	"/kvdb.v1.AuthService/RoleRevokePermission": &kvdbv1.RoleRevokePermissionRequest{Role: "nope", Key: []byte("x")},
	// Lease 77 holds the key "other-leased" and lease 78 "other-leased2"
	// (TestEveryRPCIsChecked grants them): alice may not revoke the one
	// nor list the keys of the other.
	"/kvdb.v1.LeaseService/LeaseGrant":      &kvdbv1.LeaseGrantRequest{Ttl: 60},
	"/kvdb.v1.LeaseService/LeaseRevoke":     &kvdbv1.LeaseRevokeRequest{Id: 77},
	"/kvdb.v1.LeaseService/LeaseKeepAlive":  &kvdbv1.LeaseKeepAliveRequest{Id: 77},
	"/kvdb.v1.LeaseService/LeaseTimeToLive": &kvdbv1.LeaseTimeToLiveRequest{Id: 78, Keys: true},
	"/kvdb.v1.LeaseService/LeaseLeases":     &kvdbv1.LeaseLeasesRequest{},
	"/grpc.health.v1.Health/Check":          nil, // open, checked by the health tests
	"/grpc.health.v1.Health/List":           nil,
	"/kvdb.v1.WatchService/Watch": &kvdbv1.WatchRequest{Request: &kvdbv1.WatchRequest_CreateRequest{
		CreateRequest: &kvdbv1.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("z")}}},
}

// keyless are the RPCs any authenticated user may call: data RPCs that
// touch no key (what they lead to is checked per key), and what clients
// read to find the leader.
var keyless = []string{"/kvdb.v1.TxnService/Begin", "/kvdb.v1.TxnService/Commit", "/kvdb.v1.TxnService/Rollback",
	"/kvdb.v1.AdminService/Status", "/kvdb.v1.AdminService/MemberList",
	"/kvdb.v1.LeaseService/LeaseGrant", "/kvdb.v1.LeaseService/LeaseKeepAlive", "/kvdb.v1.LeaseService/LeaseLeases"}

// TestEveryRPCIsChecked discovers every method the server serves through
// the gRPC server's own service registry and calls each with no
// credentials, as a user without the permission, and as root.
func TestEveryRPCIsChecked(t *testing.T) {
	n, a := authNode(t)
	alice, root := login(t, a, "alice", "alicepw"), login(t, a, "root", "rootpw")
	leases := kvdbv1.NewLeaseServiceClient(n.conn)
	for id, key := range map[int64]string{77: "other-leased", 78: "other-leased2"} {
		if _, err := leases.LeaseGrant(root, &kvdbv1.LeaseGrantRequest{Id: id, Ttl: 600}); err != nil {
			t.Fatal(err)
		}
		if _, err := n.kv.Put(root, &kvdbv1.PutRequest{Key: []byte(key), Value: []byte("v"), Lease: id}); err != nil {
			t.Fatal(err)
		}
	}
	var methods []string
	streaming := map[string]bool{}
	for svc, info := range n.srv.grpc.GetServiceInfo() {
		for _, m := range info.Methods {
			methods = append(methods, "/"+svc+"/"+m.Name)
			streaming["/"+svc+"/"+m.Name] = m.IsClientStream || m.IsServerStream
		}
	}
	sort.Strings(methods)
	// AuthDisable last: it ends the test's premise.
	i := slices.Index(methods, "/kvdb.v1.AuthService/AuthDisable")
	methods = append(slices.Delete(methods, i, i+1), "/kvdb.v1.AuthService/AuthDisable")
	for _, m := range methods {
		class, known := classOf(m)
		if !known {
			t.Errorf("%s has no permission class in rpcClasses", m)
			continue
		}
		req, ok := sampleRequests[m]
		if !ok {
			if class != rpcOpen {
				t.Errorf("%s has no sample request in sampleRequests: add one", m)
			}
			continue
		}
		if req == nil || class == rpcOpen {
			continue
		}
		call := func(ctx context.Context) codes.Code {
			out := newReply(m)
			if streaming[m] {
				// Through the stream interceptor: the first request, then
				// the first answer (or the refusal).
				return callStream(ctx, n.conn, m, req, out)
			}
			return status.Code(n.conn.Invoke(ctx, m, req, out))
		}
		if got := call(ctxT(t)); got != codes.Unauthenticated {
			t.Errorf("%s without credentials: %v, want Unauthenticated", m, got)
		}
		wantAlice := codes.PermissionDenied
		if slices.Contains(keyless, m) {
			wantAlice = codes.OK // anything but the two refusals
		}
		got := call(alice)
		if wantAlice == codes.PermissionDenied && got != codes.PermissionDenied {
			t.Errorf("%s as alice: %v, want PermissionDenied", m, got)
		}
		if wantAlice == codes.OK && (got == codes.PermissionDenied || got == codes.Unauthenticated) {
			t.Errorf("%s as alice: %v, want it allowed", m, got)
		}
		if got := call(root); got == codes.PermissionDenied || got == codes.Unauthenticated {
			t.Errorf("%s as root: %v, want it allowed", m, got)
		}
	}
}

// callStream opens a bidirectional stream on method, sends req and returns
// the code of the first answer: OK when one arrives, or the code a refused
// watch create names in its cancel reason.
func callStream(ctx context.Context, conn *grpc.ClientConn, method string, req, out proto.Message) codes.Code {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method)
	if err != nil {
		return status.Code(err)
	}
	if err := cs.SendMsg(req); err != nil {
		return status.Code(cs.RecvMsg(out))
	}
	if err := cs.RecvMsg(out); err != nil {
		return status.Code(err)
	}
	if w, ok := out.(*kvdbv1.WatchResponse); ok && w.GetCreated() && w.GetCanceled() {
		for c := codes.OK; c <= codes.Unauthenticated; c++ {
			if strings.HasPrefix(w.GetCancelReason(), c.String()+": ") {
				return c
			}
		}
		return codes.Unknown
	}
	return codes.OK
}

// newReply returns an empty reply message for a method of this API.
func newReply(method string) proto.Message {
	svc, name, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	for _, desc := range []struct {
		svc  string
		meth map[string]proto.Message
	}{
		{"kvdb.v1.KVService", map[string]proto.Message{"Get": &kvdbv1.GetResponse{}, "Put": &kvdbv1.PutResponse{},
			"Delete": &kvdbv1.DeleteResponse{}, "Range": &kvdbv1.RangeResponse{}, "Batch": &kvdbv1.BatchResponse{}}},
		{"kvdb.v1.TxnService", map[string]proto.Message{"Begin": &kvdbv1.BeginResponse{}, "Get": &kvdbv1.TxnServiceGetResponse{},
			"Range": &kvdbv1.TxnServiceRangeResponse{}, "Put": &kvdbv1.TxnServicePutResponse{}, "Delete": &kvdbv1.TxnServiceDeleteResponse{},
			"Commit": &kvdbv1.CommitResponse{}, "Rollback": &kvdbv1.RollbackResponse{}, "Execute": &kvdbv1.ExecuteResponse{}}},
		{"kvdb.v1.WatchService", map[string]proto.Message{"Watch": &kvdbv1.WatchResponse{}}},
	} {
		if desc.svc == svc {
			return desc.meth[name]
		}
	}
	// Admin and auth replies: any message decodes them well enough to see
	// the status, which is all the test reads.
	return &kvdbv1.StatusResponse{}
}

func TestAuthEndToEnd(t *testing.T) {
	n, a := authNode(t)
	ctx := ctxT(t)
	alice := login(t, a, "alice", "alicepw")
	// alice reads and writes her prefix only.
	if _, err := n.kv.Put(alice, &kvdbv1.PutRequest{Key: []byte("app/x"), Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.kv.Put(alice, &kvdbv1.PutRequest{Key: []byte("zzz"), Value: []byte("1")}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("put outside the prefix: %v", err)
	}
	if _, err := n.kv.Range(alice, &kvdbv1.RangeRequest{Key: []byte("app/"), Prefix: true}); err != nil {
		t.Fatalf("range of her prefix: %v", err)
	}
	// A wrong password and an unknown user read the same.
	_, errWrong := a.Authenticate(ctx, &kvdbv1.AuthenticateRequest{Name: "alice", Password: "nope"})
	_, errGhost := a.Authenticate(ctx, &kvdbv1.AuthenticateRequest{Name: "ghost", Password: "nope"})
	if status.Code(errWrong) != codes.Unauthenticated || status.Convert(errWrong).Message() != status.Convert(errGhost).Message() {
		t.Fatalf("wrong password %v, unknown user %v", errWrong, errGhost)
	}
	// A revoked role takes effect on the next request.
	root := login(t, a, "root", "rootpw")
	if _, err := a.UserRevokeRole(root, &kvdbv1.UserRevokeRoleRequest{Name: "alice", Role: "app"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.kv.Get(alice, &kvdbv1.GetRequest{Key: []byte("app/x")}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("read after the role was revoked: %v", err)
	}
	// A changed password invalidates the old token.
	if _, err := a.UserChangePassword(root, &kvdbv1.UserChangePasswordRequest{Name: "alice", Password: "new"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.kv.Get(alice, &kvdbv1.GetRequest{Key: []byte("app/x")}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("old token after a password change: %v", err)
	}
	// Another user cannot use root's transaction.
	tx := kvdbv1.NewTxnServiceClient(n.conn)
	b, err := tx.Begin(root, &kvdbv1.BeginRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.UserGrantRole(root, &kvdbv1.UserGrantRoleRequest{User: "alice", Role: "app"}); err != nil {
		t.Fatal(err)
	}
	alice = login(t, a, "alice", "new")
	if _, err := tx.Commit(alice, &kvdbv1.CommitRequest{TxnId: b.GetTxnId()}); status.Code(err) != codes.NotFound {
		t.Fatalf("commit of root's transaction as alice: %v", err)
	}
	if _, err := tx.Commit(root, &kvdbv1.CommitRequest{TxnId: b.GetTxnId()}); err != nil {
		t.Fatalf("root's own commit: %v", err)
	}
	// root cannot be removed while auth is on; disabling reopens the node.
	if _, err := a.UserDelete(root, &kvdbv1.UserDeleteRequest{Name: "root"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("delete root: %v", err)
	}
	if _, err := a.AuthDisable(root, &kvdbv1.AuthDisableRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.kv.Get(ctx, &kvdbv1.GetRequest{Key: []byte("app/x")}); err != nil {
		t.Fatalf("read with auth disabled: %v", err)
	}
	if _, err := a.AuthEnable(root, &kvdbv1.AuthEnableRequest{}); err != nil {
		t.Fatal(err)
	}
	// Repeated failures are throttled, for everyone from this address.
	var last error
	for range 8 {
		_, last = a.Authenticate(ctx, &kvdbv1.AuthenticateRequest{Name: "ghost", Password: "nope"})
	}
	if status.Code(last) != codes.ResourceExhausted {
		t.Fatalf("after repeated failures: %v", last)
	}
	if n.srv.core.AuthFailures() < 8 {
		t.Fatalf("failures counted: %d", n.srv.core.AuthFailures())
	}
}

// TestAuthSurvivesRestart: users, roles and the enabled flag come back from
// the WAL (and snapshots) after a restart.
func TestAuthSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, func(c *Config) { c.Raft.SnapshotCount = 3 })
	a := kvdbv1.NewAuthServiceClient(n.conn)
	ctx := ctxT(t)
	for _, err := range []error{
		func() error {
			_, err := a.UserAdd(ctx, &kvdbv1.UserAddRequest{Name: "root", Password: "pw"})
			return err
		}(),
		func() error { _, err := a.RoleAdd(ctx, &kvdbv1.RoleAddRequest{Name: "r1"}); return err }(),
		func() error { _, err := a.AuthEnable(ctx, &kvdbv1.AuthEnableRequest{}); return err }(),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	n.stop(t)
	n = startNode(t, dir, nil)
	a = kvdbv1.NewAuthServiceClient(n.conn)
	if _, err := n.kv.Get(ctxT(t), &kvdbv1.GetRequest{Key: []byte("k")}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("after restart without a token: %v", err)
	}
	root := login(t, a, "root", "pw")
	roles, err := a.RoleList(root, &kvdbv1.RoleListRequest{})
	if err != nil || strings.Join(roles.GetRoles(), ",") != "r1,root" {
		t.Fatalf("roles after restart: %v %v", roles.GetRoles(), err)
	}
}

// binarySamples is a well-formed request for every binary opcode; the keys
// lie outside alice's "app/" prefix. A new opcode without an entry fails
// TestEveryOpcodeIsChecked.
var binarySamples = map[wire.Opcode]*wire.Request{
	wire.OpPing:     {Op: wire.OpPing},
	wire.OpGet:      {Op: wire.OpGet, Key: []byte("other")},
	wire.OpPut:      {Op: wire.OpPut, Key: []byte("other"), Value: []byte("v")},
	wire.OpDelete:   {Op: wire.OpDelete, Key: []byte("other")},
	wire.OpRange:    {Op: wire.OpRange, Key: []byte("a"), End: []byte("z")},
	wire.OpBatch:    {Op: wire.OpBatch, Ops: []wire.BatchOp{{Type: wire.BatchPut, Key: []byte("other"), Value: []byte("v")}}},
	wire.OpBegin:    {Op: wire.OpBegin},
	wire.OpCommit:   {Op: wire.OpCommit},
	wire.OpRollback: {Op: wire.OpRollback},
	wire.OpTxn:      {Op: wire.OpTxn, Compares: []wire.Compare{{Key: []byte("other"), Target: wire.TargetVersion}}},
	wire.OpStats:    {Op: wire.OpStats},
	wire.OpAuth:     {Op: wire.OpAuth, Key: []byte("alice"), Value: []byte("alicepw")},
}

// TestEveryOpcodeIsChecked walks every opcode the protocol defines: without
// AUTH, as alice (no permission on the keys used) and as root.
func TestEveryOpcodeIsChecked(t *testing.T) {
	n, _ := authNode(t)
	open := map[wire.Opcode]bool{wire.OpPing: true, wire.OpAuth: true}
	keylessOps := map[wire.Opcode]bool{wire.OpBegin: true, wire.OpCommit: true, wire.OpRollback: true}
	dial := func(user, password string) *rawConn {
		r := dialRaw(t, n.addr)
		if user != "" {
			if resp := r.call(&wire.Request{Op: wire.OpAuth, ID: 1, Key: []byte(user), Value: []byte(password)}); resp.Status != wire.StatusOK {
				t.Fatalf("AUTH %s: %v %s", user, resp.Status, resp.Payload)
			}
		}
		return r
	}
	anon, alice, root := dial("", ""), dial("alice", "alicepw"), dial("root", "rootpw")
	id := uint64(100)
	call := func(r *rawConn, op wire.Opcode) wire.Status {
		req := *binarySamples[op]
		id++
		req.ID = id
		return r.call(&req).Status
	}
	for op := wire.OpPing; op.Valid(); op++ {
		if binarySamples[op] == nil {
			t.Errorf("opcode %s has no sample in binarySamples: add one and its permission", op)
			continue
		}
		if open[op] {
			if st := call(anon, op); st == wire.StatusUnauthenticated || st == wire.StatusPermissionDenied {
				t.Errorf("%s without AUTH: %v, want it allowed", op, st)
			}
			continue
		}
		if st := call(anon, op); st != wire.StatusUnauthenticated {
			t.Errorf("%s without AUTH: %v, want UNAUTHENTICATED", op, st)
		}
		st := call(alice, op)
		if keylessOps[op] {
			if st == wire.StatusUnauthenticated || st == wire.StatusPermissionDenied {
				t.Errorf("%s as alice: %v, want it allowed", op, st)
			}
		} else if st != wire.StatusPermissionDenied {
			t.Errorf("%s as alice: %v, want PERMISSION_DENIED", op, st)
		}
		if st := call(root, op); st == wire.StatusUnauthenticated || st == wire.StatusPermissionDenied {
			t.Errorf("%s as root: %v, want it allowed", op, st)
		}
	}
	// A wrong password leaves the connection unauthenticated.
	if resp := anon.call(&wire.Request{Op: wire.OpAuth, ID: 999, Key: []byte("alice"), Value: []byte("x")}); resp.Status != wire.StatusUnauthenticated {
		t.Fatalf("AUTH with a wrong password: %v", resp.Status)
	}
}

// TestBinarySessions: AUTH by token (empty name) works like AUTH by
// password, and a session ends on its next request once the user's password
// changes.
func TestBinarySessions(t *testing.T) {
	n, a := authNode(t)
	tok, err := a.Authenticate(ctxT(t), &kvdbv1.AuthenticateRequest{Name: "alice", Password: "alicepw"})
	if err != nil {
		t.Fatal(err)
	}
	byToken, byPassword := dialRaw(t, n.addr), dialRaw(t, n.addr)
	if r := byToken.call(&wire.Request{Op: wire.OpAuth, ID: 1, Value: []byte(tok.GetToken())}); r.Status != wire.StatusOK {
		t.Fatalf("AUTH by token: %v %s", r.Status, r.Payload)
	}
	if r := byToken.call(&wire.Request{Op: wire.OpAuth, ID: 2, Value: []byte("forged.token.x")}); r.Status != wire.StatusUnauthenticated {
		t.Fatalf("AUTH by a forged token: %v", r.Status)
	}
	if r := byPassword.call(&wire.Request{Op: wire.OpAuth, ID: 1, Key: []byte("alice"), Value: []byte("alicepw")}); r.Status != wire.StatusOK {
		t.Fatalf("AUTH by password: %v %s", r.Status, r.Payload)
	}
	for _, r := range []*rawConn{byToken, byPassword} {
		if resp := r.call(&wire.Request{Op: wire.OpPut, ID: 3, Key: []byte("app/a"), Value: []byte("1")}); resp.Status != wire.StatusOK {
			t.Fatalf("put as alice: %v %s", resp.Status, resp.Payload)
		}
	}
	root := login(t, a, "root", "rootpw")
	if _, err := a.UserChangePassword(root, &kvdbv1.UserChangePasswordRequest{Name: "alice", Password: "changed"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*rawConn{byToken, byPassword} {
		if resp := r.call(&wire.Request{Op: wire.OpGet, ID: 4, Key: []byte("app/a")}); resp.Status != wire.StatusUnauthenticated {
			t.Fatalf("get after alice's password changed: %v %s", resp.Status, resp.Payload)
		}
	}
}

// TestAuthRPCsBoundTheirInput: every AuthService call that takes a name or
// a key refuses one longer than a name or key can be, before anything is
// hashed or proposed; Authenticate answers an oversized password like a
// wrong one.
func TestAuthRPCsBoundTheirInput(t *testing.T) {
	n, a := authNode(t)
	root := login(t, a, "root", "rootpw")
	long := strings.Repeat("n", auth.MaxNameLen+1)
	bigKey := bytes.Repeat([]byte("k"), DefaultLimits.MaxKeySize+1)
	tests := []struct {
		name string
		call func() error
	}{
		{"UserAdd", func() error { _, err := a.UserAdd(root, &kvdbv1.UserAddRequest{Name: long, Password: "x"}); return err }},
		{"UserAdd password", func() error {
			_, err := a.UserAdd(root, &kvdbv1.UserAddRequest{Name: "bob", Password: strings.Repeat("p", auth.MaxPasswordLen+1)})
			return err
		}},
		{"UserGet", func() error { _, err := a.UserGet(root, &kvdbv1.UserGetRequest{Name: long}); return err }},
		{"UserDelete", func() error { _, err := a.UserDelete(root, &kvdbv1.UserDeleteRequest{Name: long}); return err }},
		{"UserChangePassword", func() error {
			_, err := a.UserChangePassword(root, &kvdbv1.UserChangePasswordRequest{Name: long, Password: "x"})
			return err
		}},
		{"UserGrantRole", func() error {
			_, err := a.UserGrantRole(root, &kvdbv1.UserGrantRoleRequest{User: "alice", Role: long})
			return err
		}},
		{"UserRevokeRole", func() error {
			_, err := a.UserRevokeRole(root, &kvdbv1.UserRevokeRoleRequest{Name: long, Role: "app"})
			return err
		}},
		{"RoleAdd", func() error { _, err := a.RoleAdd(root, &kvdbv1.RoleAddRequest{Name: long}); return err }},
		{"RoleGet", func() error { _, err := a.RoleGet(root, &kvdbv1.RoleGetRequest{Role: long}); return err }},
		{"RoleDelete", func() error { _, err := a.RoleDelete(root, &kvdbv1.RoleDeleteRequest{Role: long}); return err }},
		{"RoleGrantPermission", func() error {
			_, err := a.RoleGrantPermission(root, &kvdbv1.RoleGrantPermissionRequest{Name: "app", Perm: &kvdbv1.Permission{
				PermType: kvdbv1.PermissionType_PERMISSION_TYPE_READ, Key: bigKey}})
			return err
		}},
		{"RoleRevokePermission", func() error {
			_, err := a.RoleRevokePermission(root, &kvdbv1.RoleRevokePermissionRequest{Role: "app", Key: bigKey})
			return err
		}},
	}
	rev := n.srv.auth.Revision()
	for _, tt := range tests {
		if err := tt.call(); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s with an oversized argument: %v, want InvalidArgument", tt.name, err)
		}
	}
	if n.srv.auth.Revision() != rev {
		t.Fatal("a refused call changed the auth state")
	}
	_, err := a.Authenticate(ctxT(t), &kvdbv1.AuthenticateRequest{Name: "alice", Password: strings.Repeat("p", 1<<20)})
	if status.Code(err) != codes.Unauthenticated || status.Convert(err).Message() != auth.ErrAuthFailed.Error() {
		t.Fatalf("Authenticate with a 1 MiB password: %v", err)
	}
}

// TestPermissionChangeInFlightIsRefused: a write checked against the
// permissions before a change and applied after it is refused when it is
// applied (Aborted, nothing written): a put, a read-modify-write and an
// interactive transaction's commit. Sent again, it is checked anew.
func TestPermissionChangeInFlightIsRefused(t *testing.T) {
	n, a := authNode(t)
	root := login(t, a, "root", "rootpw")
	c := n.srv.core
	alice := core.WithUser(ctxT(t), "alice")
	revoke := func() {
		t.Helper()
		if _, err := a.UserRevokeRole(root, &kvdbv1.UserRevokeRoleRequest{Name: "alice", Role: "app"}); err != nil {
			t.Fatal(err)
		}
	}
	grant := func() {
		t.Helper()
		if _, err := a.UserGrantRole(root, &kvdbv1.UserGrantRoleRequest{User: "alice", Role: "app"}); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(what string, err error) {
		t.Helper()
		if core.CodeOf(err) != core.Aborted || !errors.Is(err, auth.ErrOldRevision) {
			t.Fatalf("%s after the permission went: %v (%v), want Aborted", what, err, core.CodeOf(err))
		}
	}

	w, err := c.PreparePut(alice, []byte("app/put"), []byte("1"), false)
	if err != nil {
		t.Fatal(err)
	}
	revoke()
	_, err = c.Do(alice, w)
	refused("put", err)
	if _, _, err := c.Get(core.WithUser(ctxT(t), "root"), []byte("app/put"), false); !errors.Is(err, core.ErrKeyNotFound) {
		t.Fatalf("the refused put was written: %v", err)
	}
	if _, err := c.PreparePut(alice, []byte("app/put"), []byte("1"), false); core.CodeOf(err) != core.PermissionDenied {
		t.Fatalf("sent again without the role: %v", err)
	}

	grant()
	w, err = c.PrepareIncrBy(alice, []byte("app/n"), 1)
	if err != nil {
		t.Fatal(err)
	}
	revoke()
	_, err = c.Do(alice, w)
	refused("read-modify-write", err)

	grant()
	b, err := c.Begin(alice, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.TxnPut(alice, b.ID, []byte("app/txn"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	revoke()
	_, err = c.Commit(alice, b.ID)
	refused("commit", err)

	// With the permission back, the same writes go through.
	grant()
	if _, err := c.Put(alice, []byte("app/put"), []byte("1"), false); err != nil {
		t.Fatalf("put with the role back: %v", err)
	}
}

// TestCredentialsEndWithTheirUser: a gRPC token, a binary-protocol session
// and a Redis-protocol session of alice all stop working when her password
// changes or she is removed, and do not come back when a user of her name
// is created again (even one with more rights); a role change applies to
// each of them at once.
func TestCredentialsEndWithTheirUser(t *testing.T) {
	type result struct {
		resp   string // the first reply line to GET, or its prefix
		binary wire.Status
		grpc   codes.Code
	}
	unauthenticated := result{"-NOAUTH Authentication required.", wire.StatusUnauthenticated, codes.Unauthenticated}
	tests := []struct {
		name   string
		change func(t *testing.T, a kvdbv1.AuthServiceClient, root context.Context) error
		key    string
		want   result
		// newPassword, when set, logs a fresh RESP session in afterwards.
		newPassword string
	}{
		{"password changed", func(t *testing.T, a kvdbv1.AuthServiceClient, root context.Context) error {
			_, err := a.UserChangePassword(root, &kvdbv1.UserChangePasswordRequest{Name: "alice", Password: "new"})
			return err
		}, "app/x", unauthenticated, "new"},
		{"removed", func(t *testing.T, a kvdbv1.AuthServiceClient, root context.Context) error {
			_, err := a.UserDelete(root, &kvdbv1.UserDeleteRequest{Name: "alice"})
			return err
		}, "app/x", unauthenticated, ""},
		{"removed and created again as root", func(t *testing.T, a kvdbv1.AuthServiceClient, root context.Context) error {
			if _, err := a.UserDelete(root, &kvdbv1.UserDeleteRequest{Name: "alice"}); err != nil {
				return err
			}
			if _, err := a.UserAdd(root, &kvdbv1.UserAddRequest{Name: "alice", Password: "other"}); err != nil {
				return err
			}
			_, err := a.UserGrantRole(root, &kvdbv1.UserGrantRoleRequest{User: "alice", Role: "root"})
			return err
		}, "secret", unauthenticated, "other"},
		{"role revoked", func(t *testing.T, a kvdbv1.AuthServiceClient, root context.Context) error {
			_, err := a.UserRevokeRole(root, &kvdbv1.UserRevokeRoleRequest{Name: "alice", Role: "app"})
			return err
		}, "app/x", result{"-NOPERM", wire.StatusPermissionDenied, codes.PermissionDenied}, ""},
		{"root granted", func(t *testing.T, a kvdbv1.AuthServiceClient, root context.Context) error {
			_, err := a.UserGrantRole(root, &kvdbv1.UserGrantRoleRequest{User: "alice", Role: "root"})
			return err
		}, "secret", result{"$1", wire.StatusOK, codes.OK}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, a := authNode(t)
			root := login(t, a, "root", "rootpw")
			for _, k := range []string{"app/x", "secret"} {
				if _, err := n.kv.Put(root, &kvdbv1.PutRequest{Key: []byte(k), Value: []byte("1")}); err != nil {
					t.Fatal(err)
				}
			}
			token := login(t, a, "alice", "alicepw")
			bin := dialRaw(t, n.addr)
			if r := bin.call(&wire.Request{Op: wire.OpAuth, ID: 1, Key: []byte("alice"), Value: []byte("alicepw")}); r.Status != wire.StatusOK {
				t.Fatalf("binary AUTH: %v %s", r.Status, r.Payload)
			}
			red := dialRESP(t, n.addr)
			// A token is no password: an empty user name is refused.
			tok, err := a.Authenticate(ctxT(t), &kvdbv1.AuthenticateRequest{Name: "alice", Password: "alicepw"})
			if err != nil {
				t.Fatal(err)
			}
			red.raw("*3\r\n$4\r\nAUTH\r\n$0\r\n\r\n$" + itoa(int64(len(tok.GetToken()))) + "\r\n" + tok.GetToken() + "\r\n")
			red.expect("-WRONGPASS invalid username-password pair or user is disabled.")
			red.send("AUTH alice alicepw", "GET app/x")
			red.expect("+OK", "$1", "1")
			get := func(key string) result {
				red.send("GET " + key)
				line, err := red.br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if strings.HasPrefix(line, "$") {
					red.expect("1")
				}
				_, err = n.kv.Get(token, &kvdbv1.GetRequest{Key: []byte(key)})
				return result{strings.TrimSuffix(line, "\r\n"), bin.call(&wire.Request{Op: wire.OpGet, ID: 2, Key: []byte(key)}).Status, status.Code(err)}
			}
			if err := tt.change(t, a, root); err != nil {
				t.Fatal(err)
			}
			got := get(tt.key)
			if !strings.HasPrefix(got.resp, tt.want.resp) || got.binary != tt.want.binary || got.grpc != tt.want.grpc {
				t.Fatalf("GET %s: RESP %q, binary %v, gRPC %v; want RESP %q, binary %v, gRPC %v",
					tt.key, got.resp, got.binary, got.grpc, tt.want.resp, tt.want.binary, tt.want.grpc)
			}
			if tt.newPassword != "" {
				red.send("AUTH alice "+tt.newPassword, "GET "+tt.key)
				red.expect("+OK", "$1", "1")
			}
		})
	}
}
