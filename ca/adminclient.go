package ca

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"

	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/wire"
)

// AdminClient talks to a running server over its admin socket.
type AdminClient struct {
	hc *http.Client
}

// NewAdminClient connects to STATE/admin.sock.
func NewAdminClient(stateDir string) *AdminClient {
	sock := filepath.Join(stateDir, AdminSocketFile)
	return &AdminClient{hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", sock)
			if err != nil {
				return nil, fmt.Errorf("connecting to the running server at %s (is `certmesh-server run` up?): %w", sock, err)
			}
			return c, nil
		},
	}}}
}

func (a *AdminClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://admin"+path, body)
	if err != nil {
		return err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e wire.Error
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
		return fmt.Errorf("server refused: %s", e.Error)
	}
	return json.NewDecoder(resp.Body).Decode(out)
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
