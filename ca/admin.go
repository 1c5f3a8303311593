package ca

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/policy"
)

// Admin API paths, served only on the local admin socket.
const (
	AdminPathTokens  = "/admin/tokens"
	AdminPathDevices = "/admin/devices"
	AdminPathUsers   = "/admin/users"
	AdminPathPending = "/admin/pending"
	AdminPathPolicy  = "/admin/policy"
	AdminPathEKs     = "/admin/eks"
)

// EKRequest adds or removes EK fingerprints on the allow-list.
type EKRequest struct {
	Fingerprints []string `json:"fingerprints"`
	Remove       bool     `json:"remove,omitempty"`
}

// PublishRequest carries a policy source to sign and publish.
type PublishRequest struct {
	Source string `json:"source"`
}

// DenyRequest gives the reason of a denial (shown to the agent).
type DenyRequest struct {
	Reason string `json:"reason,omitempty"`
}

// TokenRequest asks for a new enrollment token.
type TokenRequest struct {
	Tags []string `json:"tags,omitempty"`
	TTL  Duration `json:"ttl,omitempty"`
	// Count is how many tokens to make (default 1, at most MaxTokenBatch).
	Count int `json:"count,omitempty"`
}

// TokenResponse carries the only copy of the token.
type TokenResponse struct {
	Token     string      `json:"token"`
	ID        string      `json:"id"`
	Tags      []certs.Tag `json:"tags,omitempty"`
	ExpiresAt time.Time   `json:"expires_at"`
}

// AdminHandler serves the admin API. Serve it only on a unix socket that
// only the server's user can open, with AdminConnContext so that the log
// names who ran each command.
func (c *CA) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+AdminPathTokens, jsonHandler(func(r *http.Request, req TokenRequest) ([]TokenResponse, error) {
		tags, err := parseEach(req.Tags, certs.ParseTag, nil, "tags")
		if err != nil {
			return nil, err
		}
		if req.Count == 0 {
			req.Count = 1
		}
		toks, recs, err := c.CreateTokens(r.Context(), tags, time.Duration(req.TTL), req.Count)
		out := make([]TokenResponse, len(toks))
		for i, t := range toks {
			out[i] = TokenResponse{Token: t, ID: recs[i].ID, Tags: recs[i].Tags, ExpiresAt: recs[i].ExpiresAt}
		}
		return out, err
	}, c.reply))
	mux.HandleFunc("POST "+AdminPathBackup, jsonHandler(c.adminBackup, c.reply))
	mux.HandleFunc("GET "+AdminPathTokens, listHandler(c, c.Tokens))
	mux.HandleFunc("POST "+AdminPathTokens+"/{id}/revoke", pathHandler(c, "id", c.RevokeToken))
	mux.HandleFunc("GET "+AdminPathDevices, listHandler(c, c.Devices))
	mux.HandleFunc("POST "+AdminPathDevices+"/{id}/revoke", func(w http.ResponseWriter, r *http.Request) {
		deviceHandler(c, func(ctx context.Context, id certs.DeviceID) (store.Device, error) {
			var req RevokeRequest
			if r.ContentLength != 0 {
				if err := ReadJSON(w, r, &req); err != nil {
					return store.Device{}, err
				}
			}
			reason, err := deviceRevokeReason(req.Reason)
			if err != nil {
				return store.Device{}, err
			}
			return c.RevokeFor(ctx, id, reason)
		})(w, r)
	})
	mux.HandleFunc("GET "+AdminPathDevices+"/{id}", deviceHandler(c, c.Device))
	mux.HandleFunc("POST "+AdminPathDevices+"/{id}/approvals", func(w http.ResponseWriter, r *http.Request) {
		deviceHandler(c, func(ctx context.Context, id certs.DeviceID) (store.Device, error) {
			var req Approval
			if err := ReadJSON(w, r, &req); err != nil {
				return store.Device{}, err
			}
			return c.ApproveAsks(ctx, id, req)
		})(w, r)
	})
	mux.HandleFunc("GET "+AdminPathEKs, func(w http.ResponseWriter, r *http.Request) {
		c.reply(w, r, c.EKs(), nil)
	})
	mux.HandleFunc("POST "+AdminPathEKs, jsonHandler(func(_ *http.Request, req EKRequest) ([]string, error) {
		err := c.SetEKs(req.Fingerprints, !req.Remove)
		return c.EKs(), err
	}, c.reply))
	mux.HandleFunc("GET "+AdminPathPolicy, func(w http.ResponseWriter, r *http.Request) {
		info, err := c.CurrentPolicy()
		c.reply(w, r, info, err)
	})
	mux.HandleFunc("POST "+AdminPathPolicy, func(w http.ResponseWriter, r *http.Request) {
		var req PublishRequest
		r.Body = http.MaxBytesReader(w, r.Body, 2*policy.MaxSize)
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			c.reply(w, r, nil, refuseErr(CodeBadRequest, err, "policy publish request"))
			return
		}
		info, err := c.PublishPolicy(r.Context(), []byte(req.Source))
		c.reply(w, r, info, err)
	})
	mux.HandleFunc("GET "+AdminPathPending, listHandler(c, c.Pending))
	mux.HandleFunc("POST "+AdminPathPending+"/{id}/approve", pathHandler(c, "id", c.Approve))
	mux.HandleFunc("POST "+AdminPathPending+"/{id}/deny", jsonHandler(func(r *http.Request, req DenyRequest) (store.PendingEnrollment, error) {
		return c.Deny(r.Context(), r.PathValue("id"), req.Reason)
	}, c.reply))
	mux.HandleFunc("GET "+AdminPathUsers, listHandler(c, c.Users))
	mux.HandleFunc("POST "+AdminPathUsers+"/{ref}/approve", pathHandler(c, "ref", c.ApproveUser))
	mux.HandleFunc("POST "+AdminPathUsers+"/{ref}/revoke", pathHandler(c, "ref", c.RevokeUser))
	mux.HandleFunc("POST "+AdminPathUsers+"/{ref}/remove", pathHandler(c, "ref", c.RemoveUser))
	return c.logAdmin(mux)
}

// listHandler answers a GET with the list list returns (an empty list, not
// null, when there is nothing).
func listHandler[T any](c *CA, list func(context.Context) ([]T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := list(r.Context())
		if v == nil {
			v = []T{}
		}
		c.reply(w, r, v, err)
	}
}

// pathHandler answers a POST to a path naming what act acts on in
// segment key ({id}, {ref}).
func pathHandler[T any](c *CA, key string, act func(context.Context, string) (T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := act(r.Context(), r.PathValue(key))
		c.reply(w, r, v, err)
	}
}

// deviceHandler answers a request to a path naming a device ({id}, an ID
// or an unambiguous hostname) with what act returns for it; a name that
// names no device, or several, is refused first.
func deviceHandler[T any](c *CA, act func(context.Context, certs.DeviceID) (T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := c.ResolveDevice(r.Context(), r.PathValue("id"))
		if err != nil {
			c.reply(w, r, nil, err)
			return
		}
		v, err := act(r.Context(), id)
		c.reply(w, r, v, err)
	}
}
