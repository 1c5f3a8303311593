package console_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/logbuf"
	"github.com/certmesh/certmesh/internal/tlsclient"
	"github.com/certmesh/certmesh/server/console"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/oidctest"
)

const adminGroup = "certmesh-admins"

var (
	alice = oidctest.User{Subject: "alice", Email: "alice@corp.example", EmailVerified: true, Password: "alice-pw",
		Groups: []string{"engineering", adminGroup}}
	bob = oidctest.User{Subject: "bob", Email: "bob@corp.example", EmailVerified: true, Password: "bob-pw",
		Groups: []string{"engineering"}}
)

// fixture is a real server (meshlab's in-process backend: CA,
// coordinator, admin socket, the console on the HTTPS port) whose CA is a
// relying party of a real OpenID Provider with alice (an admin) and bob.
type fixture struct {
	lab  *meshlab.InProc
	idp  *oidctest.Provider
	log  *logbuf.Buffer // the server's log
	base string         // https://127.0.0.1:port
}

type fixtureOptions struct {
	approval bool // approval required for enrollments
	noSSO    bool // no oidc at all: the console is off
	users    bool // a new user's first login waits for an admin
}

func newFixture(t *testing.T, fo fixtureOptions) *fixture {
	t.Helper()
	f := &fixture{log: &logbuf.Buffer{}}
	var clientID, secret string
	o := meshlab.InProcOptions{ServerLog: f.log, Config: func(cfg *ca.Config, base string) {
		if cfg.OIDC != nil {
			cfg.OIDC.AdminGroups = []string{adminGroup}
			clientID, secret = cfg.OIDC.ClientID, cfg.OIDC.ClientSecret
			cfg.OIDC.RequireApproval = fo.users
		}
		if fo.approval {
			cfg.Approval = ca.ApprovalRequired
		}
	}}
	if !fo.noSSO {
		o.Users = []oidctest.User{alice, bob}
	}
	f.lab = meshlab.NewInProc(t, o)
	f.base = f.lab.URL.String()
	if f.idp = f.lab.IdP(); f.idp != nil {
		f.idp.AddClient(clientID, secret, f.base+"/v1/login/callback", f.base+console.CallbackPath)
	}
	return f
}

// browser is an HTTPS client with a cookie jar that trusts the mesh's root
// and does not follow redirects.
func (f *fixture) browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: tlsclient.Config(f.lab.Roots, nil, nil)},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// signIn signs u in to the console through the provider's login page and
// returns the callback's answer.
func (f *fixture) signIn(t *testing.T, b *http.Client, u oidctest.User) (*http.Response, string) {
	t.Helper()
	resp, _ := f.do(t, b, http.MethodGet, "/admin/login", nil, nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("/admin/login: %s", resp.Status)
	}
	cb, err := f.idp.Login(t.Context(), resp.Header.Get("Location"), u.Email, u.Password)
	if err != nil {
		t.Fatal(err)
	}
	return f.do(t, b, http.MethodGet, cb.RequestURI(), nil, nil)
}

// do sends a request to the server (a form if form is not nil) and
// returns the answer and its body.
func (f *fixture) do(t *testing.T, b *http.Client, method, path string, form url.Values, hdr http.Header) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(t.Context(), method, f.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	return resp, string(page)
}
