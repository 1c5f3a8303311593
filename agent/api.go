package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Local API paths, served on STATE/agent.sock.
const apiPathStatus = "/status"

// serveAPI serves the local API on a unix socket only the agent's user can
// open.
func (a *Agent) serveAPI(ctx context.Context) error {
	sock := filepath.Join(a.cfg.StateDir, SocketFile)
	_ = os.Remove(sock)
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", sock)
	syscall.Umask(old)
	if err != nil {
		return fmt.Errorf("opening local API socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+apiPathStatus, func(w http.ResponseWriter, r *http.Request) {
		st, err := a.Status()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// Client talks to a running agent's local API.
type Client struct{ hc *http.Client }

// NewClient connects to STATE/agent.sock.
func NewClient(stateDir string) *Client {
	sock := filepath.Join(stateDir, SocketFile)
	return &Client{hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", sock)
			if err != nil {
				return nil, fmt.Errorf("connecting to the agent at %s (is `certmesh agent` running?): %w", sock, err)
			}
			return c, nil
		},
	}}}
}

// Status fetches the agent's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+apiPathStatus, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("agent answered %s", resp.Status)
	}
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("decoding agent status: %w", err)
	}
	return &st, nil
}
