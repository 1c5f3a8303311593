package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/certmesh/certmesh/internal/localapi"
)

// Local API paths, served on STATE/agent.sock.
const (
	apiPathStatus = "/status"
	apiPathLogin  = "/login"
	apiPathLogout = "/logout"
	apiPathRenew  = "/renew"
)

// LoginRequest asks the agent to start a user login.
type LoginRequest struct {
	DeviceFlow bool `json:"device_flow,omitempty"`
}

// serveAPI serves the local API on the control socket (apisocket.go)
// until stop is called.
func (a *Agent) serveAPI() (stop func(), err error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+apiPathStatus, func(w http.ResponseWriter, r *http.Request) {
		st, err := a.Status()
		if err != nil {
			apiError(w, http.StatusInternalServerError, err)
			return
		}
		apiJSON(w, st)
	})
	mux.HandleFunc("POST "+apiPathLogin, func(w http.ResponseWriter, r *http.Request) {
		var req LoginRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10)).Decode(&req); err != nil {
			apiError(w, http.StatusBadRequest, fmt.Errorf("login request: %w", err))
			return
		}
		st, err := a.Login(r.Context(), req.DeviceFlow)
		if err != nil {
			apiError(w, http.StatusBadGateway, err)
			return
		}
		apiJSON(w, st)
	})
	mux.HandleFunc("GET "+apiPathLogin, a.serveLoginStatus)
	mux.HandleFunc("GET "+apiPathDNS, a.serveDNSQuery)
	mux.HandleFunc("POST "+apiPathRenew, func(w http.ResponseWriter, r *http.Request) {
		if err := a.RenewNow(r.Context()); err != nil {
			apiError(w, http.StatusBadGateway, err)
			return
		}
		st, err := a.Status()
		if err != nil {
			apiError(w, http.StatusInternalServerError, err)
			return
		}
		apiJSON(w, st.Self)
	})
	mux.HandleFunc("POST "+apiPathLogout, func(w http.ResponseWriter, r *http.Request) {
		if err := a.Logout(r.Context()); err != nil {
			apiError(w, http.StatusInternalServerError, err)
			return
		}
		apiJSON(w, struct{}{})
	})
	return a.serveSocket(mux)
}

func apiJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v) // fails only if the CLI went away: nobody to tell
}

// apiError answers with {"error": ...}.
func apiError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()}) // as in apiJSON
}

// Client talks to a running agent's local API.
type Client struct{ api, long *localapi.Client }

// NewClient connects to STATE/agent.sock.
func NewClient(stateDir string) *Client {
	sock := filepath.Join(stateDir, SocketFile)
	return &Client{api: localapi.New(sock, "agent", "is `certmesh agent` running?", 10*time.Second), long: newLongClient(stateDir)}
}

// do calls the local API.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	return c.api.Do(ctx, method, path, in, out)
}

// Status fetches the agent's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.do(ctx, http.MethodGet, apiPathStatus, nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Login starts a user login through the agent.
func (c *Client) Login(ctx context.Context, req LoginRequest) (LoginState, error) {
	var st LoginState
	return st, c.do(ctx, http.MethodPost, apiPathLogin, req, &st)
}

// LoginStatus reports the latest login.
func (c *Client) LoginStatus(ctx context.Context) (LoginState, error) {
	var st LoginState
	return st, c.do(ctx, http.MethodGet, apiPathLogin, nil, &st)
}

// Renew renews the machine certificate now and returns the new self status.
func (c *Client) Renew(ctx context.Context) (SelfStatus, error) {
	var st SelfStatus
	return st, c.do(ctx, http.MethodPost, apiPathRenew, struct{}{}, &st)
}

// Logout drops the user certificate.
func (c *Client) Logout(ctx context.Context) error {
	var out struct{}
	return c.do(ctx, http.MethodPost, apiPathLogout, struct{}{}, &out)
}
