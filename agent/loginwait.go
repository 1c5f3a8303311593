package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/certmesh/certmesh/internal/localapi"
	"github.com/certmesh/certmesh/internal/wire"
)

// Waiting for a login: `certmesh login` asks the local API to answer when
// the login's status changes (a long poll) instead of asking once a second,
// so it returns as soon as the user certificate is issued. The agent itself
// long-polls the CA the same way (wire.LoginPollRequest.Known).
const (
	// loginWaitMax bounds one long poll of the local API.
	loginWaitMax = 25 * time.Second
	// loginWaitPause separates two long polls that came back unchanged, so
	// that an agent that answers at once (one from before long polls)
	// is not asked in a tight loop.
	loginWaitPause = 500 * time.Millisecond
)

// loginChangedLocked wakes the waiters of WaitLogin; a.mu is held.
func (a *Agent) loginChangedLocked() {
	if a.loginCh != nil {
		close(a.loginCh)
		a.loginCh = nil
	}
}

// WaitLogin returns the latest login as soon as it is not login id in
// status known any more (it finished, changed status, or another login or a
// logout replaced it), or when ctx ends.
func (a *Agent) WaitLogin(ctx context.Context, id string, known wire.LoginStatus) LoginState {
	for {
		a.mu.Lock()
		st := a.login
		if st.LoginID != id || st.Status != known {
			a.mu.Unlock()
			return st
		}
		if a.loginCh == nil {
			a.loginCh = make(chan struct{})
		}
		ch := a.loginCh
		a.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return st
		}
	}
}

// serveLoginStatus answers GET /login: at once, or with ?login=ID&known=STATUS
// when that login's status is no longer STATUS (at most loginWaitMax later).
func (a *Agent) serveLoginStatus(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id := q.Get("login")
	if id == "" {
		apiJSON(w, a.LoginStatus())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), loginWaitMax)
	defer cancel()
	apiJSON(w, a.WaitLogin(ctx, id, wire.LoginStatus(q.Get("known"))))
}

// WaitLogin asks the agent for login id once its status is no longer known;
// the answer comes when it changes, or unchanged after at most loginWaitMax.
func (c *Client) WaitLogin(ctx context.Context, id string, known wire.LoginStatus) (LoginState, error) {
	var st LoginState
	path := apiPathLogin + "?" + url.Values{"login": {id}, "known": {string(known)}}.Encode()
	return st, c.long.Do(ctx, http.MethodGet, path, nil, &st)
}

// AwaitLogin follows login st until it ends: it returns the final state
// when the user certificate is there, an error when the login failed or was
// replaced, and calls progress with every other change (waiting for an
// administrator's approval).
func (c *Client) AwaitLogin(ctx context.Context, st LoginState, progress func(LoginState)) (LoginState, error) {
	known := st.Status
	for {
		cur, err := c.WaitLogin(ctx, st.LoginID, known)
		if err != nil {
			return cur, err
		}
		if cur.LoginID != st.LoginID {
			return cur, errors.New("another login replaced this one")
		}
		switch {
		case cur.Status == wire.LoginDone:
			if cur.User == nil {
				return cur, errors.New("the agent reports the login done without a user")
			}
			return cur, nil
		case cur.Status == wire.LoginFailed:
			return cur, fmt.Errorf("login failed: %s", cur.Message)
		case cur.Status == known:
			select { // unchanged after a long poll
			case <-ctx.Done():
				return cur, ctx.Err()
			case <-time.After(loginWaitPause):
			}
		default:
			if progress != nil {
				progress(cur)
			}
			known = cur.Status
		}
	}
}

// newLongClient is a local API client for long polls.
func newLongClient(stateDir string) *localapi.Client {
	return localapi.New(filepath.Join(stateDir, SocketFile), "agent", "is `certmesh agent` running?", loginWaitMax+10*time.Second)
}
