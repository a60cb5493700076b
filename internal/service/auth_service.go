package service

import (
	"context"

	"google.golang.org/grpc/peer"

	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
	"github.com/kvdb/kvdb/internal/auth"
)

// authService implements kvdbv1.AuthService by translating to core's auth
// operations (which check the root role themselves).
type authService struct {
	kvdbv1.UnimplementedAuthServiceServer
	s *Server
}

func (a *authService) hdr() *kvdbv1.ResponseHeader { return a.s.header(a.s.store.Revision()) }

func (a *authService) Authenticate(ctx context.Context, req *kvdbv1.AuthenticateRequest) (*kvdbv1.AuthenticateResponse, error) {
	from := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		from = hostOf(p.Addr.String())
	}
	tok, err := a.s.core.Authenticate(ctx, req.GetName(), req.GetPassword(), from)
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.AuthenticateResponse{Header: a.hdr(), Token: tok}, nil
}

func (a *authService) AuthEnable(ctx context.Context, _ *kvdbv1.AuthEnableRequest) (*kvdbv1.AuthEnableResponse, error) {
	if err := a.s.core.AuthEnable(ctx); err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.AuthEnableResponse{Header: a.hdr()}, nil
}

func (a *authService) AuthDisable(ctx context.Context, _ *kvdbv1.AuthDisableRequest) (*kvdbv1.AuthDisableResponse, error) {
	if err := a.s.core.AuthDisable(ctx); err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.AuthDisableResponse{Header: a.hdr()}, nil
}

func (a *authService) AuthStatus(ctx context.Context, _ *kvdbv1.AuthStatusRequest) (*kvdbv1.AuthStatusResponse, error) {
	on, rev, err := a.s.core.AuthStatus(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.AuthStatusResponse{Header: a.hdr(), Enabled: on, AuthRevision: rev}, nil
}

func (a *authService) UserAdd(ctx context.Context, req *kvdbv1.UserAddRequest) (*kvdbv1.UserAddResponse, error) {
	if err := a.s.core.UserAdd(ctx, req.GetName(), req.GetPassword(), req.GetNoPassword()); err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.UserAddResponse{Header: a.hdr()}, nil
}

func (a *authService) UserGet(ctx context.Context, req *kvdbv1.UserGetRequest) (*kvdbv1.UserGetResponse, error) {
	roles, err := a.s.core.UserGet(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.UserGetResponse{Header: a.hdr(), Roles: roles}, nil
}

func (a *authService) UserList(ctx context.Context, _ *kvdbv1.UserListRequest) (*kvdbv1.UserListResponse, error) {
	users, err := a.s.core.UserList(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.UserListResponse{Header: a.hdr(), Users: users}, nil
}

func (a *authService) UserDelete(ctx context.Context, req *kvdbv1.UserDeleteRequest) (*kvdbv1.UserDeleteResponse, error) {
	if err := a.s.core.UserDelete(ctx, req.GetName()); err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.UserDeleteResponse{Header: a.hdr()}, nil
}

func (a *authService) UserChangePassword(ctx context.Context, req *kvdbv1.UserChangePasswordRequest) (*kvdbv1.UserChangePasswordResponse, error) {
	if err := a.s.core.UserChangePassword(ctx, req.GetName(), req.GetPassword()); err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.UserChangePasswordResponse{Header: a.hdr()}, nil
}

func (a *authService) UserGrantRole(ctx context.Context, req *kvdbv1.UserGrantRoleRequest) (*kvdbv1.UserGrantRoleResponse, error) {
	if err := a.s.core.UserGrantRole(ctx, req.GetUser(), req.GetRole()); err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.UserGrantRoleResponse{Header: a.hdr()}, nil
}

func (a *authService) UserRevokeRole(ctx context.Context, req *kvdbv1.UserRevokeRoleRequest) (*kvdbv1.UserRevokeRoleResponse, error) {
	if err := a.s.core.UserRevokeRole(ctx, req.GetName(), req.GetRole()); err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.UserRevokeRoleResponse{Header: a.hdr()}, nil
}

func (a *authService) RoleAdd(ctx context.Context, req *kvdbv1.RoleAddRequest) (*kvdbv1.RoleAddResponse, error) {
	if err := a.s.core.RoleAdd(ctx, req.GetName()); err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.RoleAddResponse{Header: a.hdr()}, nil
}

func (a *authService) RoleGet(ctx context.Context, req *kvdbv1.RoleGetRequest) (*kvdbv1.RoleGetResponse, error) {
	perms, err := a.s.core.RoleGet(ctx, req.GetRole())
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &kvdbv1.RoleGetResponse{Header: a.hdr()}
	for _, p := range perms {
		resp.Perm = append(resp.Perm, &kvdbv1.Permission{PermType: kvdbv1.PermissionType(p.Type), Key: p.Key, RangeEnd: p.End})
	}
	return resp, nil
}

func (a *authService) RoleList(ctx context.Context, _ *kvdbv1.RoleListRequest) (*kvdbv1.RoleListResponse, error) {
	roles, err := a.s.core.RoleList(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.RoleListResponse{Header: a.hdr(), Roles: roles}, nil
}

func (a *authService) RoleDelete(ctx context.Context, req *kvdbv1.RoleDeleteRequest) (*kvdbv1.RoleDeleteResponse, error) {
	if err := a.s.core.RoleDelete(ctx, req.GetRole()); err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.RoleDeleteResponse{Header: a.hdr()}, nil
}

func (a *authService) RoleGrantPermission(ctx context.Context, req *kvdbv1.RoleGrantPermissionRequest) (*kvdbv1.RoleGrantPermissionResponse, error) {
	p := req.GetPerm()
	if err := a.s.core.RoleGrantPermission(ctx, req.GetName(), auth.Permission{Type: auth.Perm(p.GetPermType()), Key: p.GetKey(), End: p.GetRangeEnd()}); err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.RoleGrantPermissionResponse{Header: a.hdr()}, nil
}

func (a *authService) RoleRevokePermission(ctx context.Context, req *kvdbv1.RoleRevokePermissionRequest) (*kvdbv1.RoleRevokePermissionResponse, error) {
	if err := a.s.core.RoleRevokePermission(ctx, req.GetRole(), req.GetKey(), req.GetRangeEnd()); err != nil {
		return nil, toStatus(err)
	}
	return &kvdbv1.RoleRevokePermissionResponse{Header: a.hdr()}, nil
}
