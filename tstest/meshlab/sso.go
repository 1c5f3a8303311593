package meshlab

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/oidctest"
)

// The lab's OpenID Provider: the same accounts and client on every
// backend; only where the CA's callback listens differs.

const (
	oidcClientID     = "certmesh"
	oidcClientSecret = "secret"
)

func newIdP(t testing.TB, users []oidctest.User) *oidctest.Provider {
	var opts []oidctest.Option
	for _, u := range users {
		opts = append(opts, oidctest.WithUser(u))
	}
	return oidctest.New(t, opts...)
}

// relyingParty registers the CA as a client of idp whose callback is
// redirect, and returns the CA's OIDC configuration for it.
func relyingParty(idp *oidctest.Provider, redirect string) *ca.OIDCConfig {
	idp.AddClient(oidcClientID, oidcClientSecret, redirect)
	return &ca.OIDCConfig{Issuer: idp.Issuer(), ClientID: oidcClientID, ClientSecret: oidcClientSecret,
		RedirectURL: redirect, CAFile: idp.CAFile()}
}

// Login drives a login through n's local API (what `certmesh login` does):
// u follows the URL and signs in, and a browser on this machine delivers
// the provider's redirect to the CA's callback.
func (m *InProc) Login(t testing.TB, node Node, u oidctest.User) error {
	t.Helper()
	n := node.(*InProcNode)
	if m.idp == nil {
		t.Fatal("meshlab: Login needs Options.Users")
	}
	st, err := n.Client.Login(t.Context(), agent.LoginRequest{})
	if err != nil {
		return fmt.Errorf("login through %s: %w", n.Name, err)
	}
	redirect, err := m.idp.Login(t.Context(), st.AuthURL, u.Email, u.Password)
	if err != nil {
		return fmt.Errorf("signing in at the provider: %w", err)
	}
	resp, err := m.Browser().Get(redirect.String())
	if err != nil {
		return fmt.Errorf("the browser cannot reach the CA's callback: %w", err)
	}
	page, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		ls, err := n.Client.LoginStatus(ctx)
		switch {
		case err != nil:
			return fmt.Errorf("login on %s: %w (callback: %s %s)", n.Name, err, resp.Status, page)
		case ls.Status == wire.LoginFailed:
			return fmt.Errorf("login on %s failed: %s", n.Name, ls.Message)
		case ls.Status == wire.LoginDone:
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("login on %s done, but the callback answered %s: %s", n.Name, resp.Status, page)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("login on %s is still %s (callback: %s %s)", n.Name, ls.Status, resp.Status, page)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
