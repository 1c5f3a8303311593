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

// call calls the admin API and returns its answer, a T.
func call[T any](ctx context.Context, a *AdminClient, method, path string, in any) (T, error) {
	var out T
	return out, a.do(ctx, method, path, in, &out)
}

// CreateTokens asks the server for req.Count enrollment tokens (one if 0).
func (a *AdminClient) CreateTokens(ctx context.Context, req TokenRequest) ([]TokenResponse, error) {
	return call[[]TokenResponse](ctx, a, http.MethodPost, AdminPathTokens, req)
}

// CreateToken asks the server for one enrollment token.
func (a *AdminClient) CreateToken(ctx context.Context, req TokenRequest) (TokenResponse, error) {
	req.Count = 1
	toks, err := a.CreateTokens(ctx, req)
	if err == nil && len(toks) != 1 {
		err = fmt.Errorf("server answered %d tokens for one", len(toks))
	}
	if err != nil {
		return TokenResponse{}, err
	}
	return toks[0], nil
}

// Tokens lists the enrollment tokens.
func (a *AdminClient) Tokens(ctx context.Context) ([]TokenInfo, error) {
	return call[[]TokenInfo](ctx, a, http.MethodGet, AdminPathTokens, nil)
}

// RevokeToken revokes an unused enrollment token.
func (a *AdminClient) RevokeToken(ctx context.Context, id string) (TokenInfo, error) {
	return call[TokenInfo](ctx, a, http.MethodPost, AdminPathTokens+"/"+url.PathEscape(id)+"/revoke", nil)
}

// Devices lists enrolled devices.
func (a *AdminClient) Devices(ctx context.Context) ([]store.Device, error) {
	return call[[]store.Device](ctx, a, http.MethodGet, AdminPathDevices, nil)
}

// Revoke revokes a device (by ID or unambiguous hostname) for
// cessationOfOperation.
func (a *AdminClient) Revoke(ctx context.Context, ref string) (store.Device, error) {
	return a.RevokeFor(ctx, ref, "")
}

// RevokeFor revokes a device for an RFC 5280 reason named as in
// translog (keyCompromise); empty is cessationOfOperation.
func (a *AdminClient) RevokeFor(ctx context.Context, ref, reason string) (store.Device, error) {
	return call[store.Device](ctx, a, http.MethodPost, AdminPathDevices+"/"+url.PathEscape(ref)+"/revoke", RevokeRequest{Reason: reason})
}

// Device shows one device.
func (a *AdminClient) Device(ctx context.Context, id string) (store.Device, error) {
	return call[store.Device](ctx, a, http.MethodGet, AdminPathDevices+"/"+url.PathEscape(id), nil)
}

// ApproveAsks approves (or, with Deny, withdraws) routes and services of
// a device.
func (a *AdminClient) ApproveAsks(ctx context.Context, id string, req Approval) (store.Device, error) {
	return call[store.Device](ctx, a, http.MethodPost, AdminPathDevices+"/"+url.PathEscape(id)+"/approvals", req)
}

// Users lists the users who logged in.
func (a *AdminClient) Users(ctx context.Context) ([]store.User, error) {
	return call[[]store.User](ctx, a, http.MethodGet, AdminPathUsers, nil)
}

// ApproveUser approves a pending user (by ID or email).
func (a *AdminClient) ApproveUser(ctx context.Context, ref string) (store.User, error) {
	return call[store.User](ctx, a, http.MethodPost, AdminPathUsers+"/"+url.PathEscape(ref)+"/approve", nil)
}

// RemoveUser deletes a user record (by ID or email).
func (a *AdminClient) RemoveUser(ctx context.Context, ref string) (store.User, error) {
	return call[store.User](ctx, a, http.MethodPost, AdminPathUsers+"/"+url.PathEscape(ref)+"/remove", nil)
}

// Pending lists enrollments waiting for approval (and decided ones).
func (a *AdminClient) Pending(ctx context.Context) ([]store.PendingEnrollment, error) {
	return call[[]store.PendingEnrollment](ctx, a, http.MethodGet, AdminPathPending, nil)
}

// Approve approves a pending enrollment.
func (a *AdminClient) Approve(ctx context.Context, id string) (store.Device, error) {
	return call[store.Device](ctx, a, http.MethodPost, AdminPathPending+"/"+url.PathEscape(id)+"/approve", nil)
}

// Deny denies a pending enrollment.
func (a *AdminClient) Deny(ctx context.Context, id, reason string) (store.PendingEnrollment, error) {
	return call[store.PendingEnrollment](ctx, a, http.MethodPost, AdminPathPending+"/"+url.PathEscape(id)+"/deny", DenyRequest{Reason: reason})
}

// Policy describes the current policy.
func (a *AdminClient) Policy(ctx context.Context) (PolicyInfo, error) {
	return call[PolicyInfo](ctx, a, http.MethodGet, AdminPathPolicy, nil)
}

// PublishPolicy signs and publishes a policy source.
func (a *AdminClient) PublishPolicy(ctx context.Context, src []byte) (PolicyInfo, error) {
	return call[PolicyInfo](ctx, a, http.MethodPost, AdminPathPolicy, PublishRequest{Source: string(src)})
}

// RevokeUser revokes a user's certificates and blocks the user's logins.
func (a *AdminClient) RevokeUser(ctx context.Context, ref string) (store.User, error) {
	return call[store.User](ctx, a, http.MethodPost, AdminPathUsers+"/"+url.PathEscape(ref)+"/revoke", nil)
}

// EKs lists the allow-listed EK fingerprints.
func (a *AdminClient) EKs(ctx context.Context) ([]string, error) {
	return call[[]string](ctx, a, http.MethodGet, AdminPathEKs, nil)
}

// SetEKs adds (or, with remove, removes) EK fingerprints.
func (a *AdminClient) SetEKs(ctx context.Context, fps []string, remove bool) ([]string, error) {
	return call[[]string](ctx, a, http.MethodPost, AdminPathEKs, EKRequest{Fingerprints: fps, Remove: remove})
}
