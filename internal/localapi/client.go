// Package localapi is the client half of certmesh's local control sockets:
// JSON requests over a unix socket that only the machine's administrator can
// open (the agent's agent.sock, the server's admin.sock). The agent and the
// server share it because neither may import the other.
package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// maxErrorBody bounds how much of a refusal is read.
const maxErrorBody = 1 << 16

// Client sends JSON requests to one unix socket.
type Client struct {
	hc   *http.Client
	peer string // what answers on the socket, for messages: "agent", "server"
}

// New returns a client for the socket at sock. peer names what listens there
// and hint says how to start it; both only shape error messages. A zero
// timeout means none.
func New(sock, peer, hint string, timeout time.Duration) *Client {
	return &Client{peer: peer, hc: &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", sock)
			if err != nil {
				return nil, fmt.Errorf("connecting to the %s at %s (%s): %w", peer, sock, hint, err)
			}
			return c, nil
		},
	}}}
}

// RefusedError is an answer other than 200 OK: the other side was reached
// and said no.
type RefusedError struct {
	Status int    // HTTP status
	Msg    string // the answer's "error" field, or a description of the status
}

func (e *RefusedError) Error() string { return e.Msg }

// Do sends in (if not nil) as JSON and decodes the answer into out (if not
// nil). An answer other than 200 OK becomes a *RefusedError carrying the "error"
// field of its JSON body, or its status when there is none.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding the request to %s: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.peer+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		msg := fmt.Sprintf("the %s answered %s", c.peer, resp.Status)
		if json.NewDecoder(io.LimitReader(resp.Body, maxErrorBody)).Decode(&e) == nil && e.Error != "" {
			msg = e.Error
		}
		return &RefusedError{Status: resp.StatusCode, Msg: msg}
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding the %s's answer to %s: %w", c.peer, path, err)
	}
	return nil
}
