package ca

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"

	"github.com/certmesh/certmesh/internal/localapi"
	"github.com/certmesh/certmesh/internal/store"
)

// AdminClient talks to a running server over its admin socket.
type AdminClient struct {
	api *localapi.Client
}

// NewAdminClient connects to STATE/admin.sock.
func NewAdminClient(stateDir string) *AdminClient {
	sock := filepath.Join(stateDir, AdminSocketFile)
	return &AdminClient{api: localapi.New(sock, "server", "is `certmesh-server run` up?", 0)}
}

// do calls the admin API; a refusal says the server refused and why.
func (a *AdminClient) do(ctx context.Context, method, path string, in, out any) error {
	err := a.api.Do(ctx, method, path, in, out)
	if refused, ok := errors.AsType[*localapi.RefusedError](err); ok {
		return fmt.Errorf("server refused: %w", refused)
	}
	return err
}

// CreateToken asks the server for an enrollment token.
func (a *AdminClient) CreateToken(ctx context.Context, req TokenRequest) (TokenResponse, error) {
	var out TokenResponse
	return out, a.do(ctx, http.MethodPost, AdminPathTokens, req, &out)
}

// Devices lists enrolled devices.
func (a *AdminClient) Devices(ctx context.Context) ([]store.Device, error) {
	var out []store.Device
	return out, a.do(ctx, http.MethodGet, AdminPathDevices, nil, &out)
}

// Revoke revokes a device.
func (a *AdminClient) Revoke(ctx context.Context, id string) (store.Device, error) {
	var out store.Device
	return out, a.do(ctx, http.MethodPost, AdminPathDevices+"/"+id+"/revoke", nil, &out)
}

// Device shows one device.
func (a *AdminClient) Device(ctx context.Context, id string) (store.Device, error) {
	var out store.Device
	return out, a.do(ctx, http.MethodGet, AdminPathDevices+"/"+url.PathEscape(id), nil, &out)
}

// ApproveAsks approves (or, with Deny, withdraws) routes and services of
// a device.
func (a *AdminClient) ApproveAsks(ctx context.Context, id string, req Approval) (store.Device, error) {
	var out store.Device
	return out, a.do(ctx, http.MethodPost, AdminPathDevices+"/"+url.PathEscape(id)+"/approvals", req, &out)
}

// Users lists the users who logged in.
func (a *AdminClient) Users(ctx context.Context) ([]store.User, error) {
	var out []store.User
	return out, a.do(ctx, http.MethodGet, AdminPathUsers, nil, &out)
}

// ApproveUser approves a pending user (by ID or email).
func (a *AdminClient) ApproveUser(ctx context.Context, ref string) (store.User, error) {
	var out store.User
	return out, a.do(ctx, http.MethodPost, AdminPathUsers+"/"+url.PathEscape(ref)+"/approve", nil, &out)
}

// RemoveUser deletes a user record (by ID or email).
func (a *AdminClient) RemoveUser(ctx context.Context, ref string) (store.User, error) {
	var out store.User
	return out, a.do(ctx, http.MethodPost, AdminPathUsers+"/"+url.PathEscape(ref)+"/remove", nil, &out)
}

// Pending lists enrollments waiting for approval (and decided ones).
func (a *AdminClient) Pending(ctx context.Context) ([]store.PendingEnrollment, error) {
	var out []store.PendingEnrollment
	return out, a.do(ctx, http.MethodGet, AdminPathPending, nil, &out)
}

// Approve approves a pending enrollment.
func (a *AdminClient) Approve(ctx context.Context, id string) (store.Device, error) {
	var out store.Device
	return out, a.do(ctx, http.MethodPost, AdminPathPending+"/"+url.PathEscape(id)+"/approve", nil, &out)
}

// Deny denies a pending enrollment.
func (a *AdminClient) Deny(ctx context.Context, id, reason string) (store.PendingEnrollment, error) {
	var out store.PendingEnrollment
	return out, a.do(ctx, http.MethodPost, AdminPathPending+"/"+url.PathEscape(id)+"/deny", DenyRequest{Reason: reason}, &out)
}

// Policy describes the current policy.
func (a *AdminClient) Policy(ctx context.Context) (PolicyInfo, error) {
	var out PolicyInfo
	return out, a.do(ctx, http.MethodGet, AdminPathPolicy, nil, &out)
}

// PublishPolicy signs and publishes a policy source.
func (a *AdminClient) PublishPolicy(ctx context.Context, src []byte) (PolicyInfo, error) {
	var out PolicyInfo
	return out, a.do(ctx, http.MethodPost, AdminPathPolicy, PublishRequest{Source: string(src)}, &out)
}

// RevokeUser revokes a user's certificates and blocks the user's logins.
func (a *AdminClient) RevokeUser(ctx context.Context, ref string) (store.User, error) {
	var out store.User
	return out, a.do(ctx, http.MethodPost, AdminPathUsers+"/"+url.PathEscape(ref)+"/revoke", nil, &out)
}

// EKs lists the allow-listed EK fingerprints.
func (a *AdminClient) EKs(ctx context.Context) ([]string, error) {
	var out []string
	return out, a.do(ctx, http.MethodGet, AdminPathEKs, nil, &out)
}

// SetEKs adds (or, with remove, removes) EK fingerprints.
func (a *AdminClient) SetEKs(ctx context.Context, fps []string, remove bool) ([]string, error) {
	var out []string
	return out, a.do(ctx, http.MethodPost, AdminPathEKs, EKRequest{Fingerprints: fps, Remove: remove}, &out)
}
