package ca_test

// User login against a real OpenID Provider (tstest/oidctest, zitadel's
// pkg/op) on loopback: the CA is its relying party over HTTPS, devices talk
// to the CA over mTLS, and the "browser" follows the authorization URL,
// submits the login form and delivers the redirect to the CA's callback.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/logbuf"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/oidctest"
)

const (
	clientID     = "certmesh"
	clientSecret = "certmesh-client-secret"
	password     = "correct horse"
)

var (
	alice = oidctest.User{Subject: "u-alice", Email: "alice@corp.example", EmailVerified: true, Password: password,
		Groups: []string{"eng", "db-admins"}}
	bob = oidctest.User{Subject: "u-bob", Email: "bob@corp.example", EmailVerified: true, Password: password,
		Groups: []string{"sales"}}
	eve = oidctest.User{Subject: "u-eve", Email: "eve@elsewhere.example", EmailVerified: true, Password: password,
		Groups: []string{"eng"}}
)

// loginEnv is a CA configured as relying party of a test provider.
type loginEnv struct {
	*testEnv
	IdP  *oidctest.Provider
	Logs *logbuf.Buffer // what the CA logged
}

// newOIDCState starts the provider and initialises a state directory whose
// config.json points at it; ln is the listener the CA's callback URL names.
func newOIDCState(t *testing.T, edit func(*ca.OIDCConfig), opts ...oidctest.Option) (string, *oidctest.Provider, net.Listener) {
	t.Helper()
	opts = append([]oidctest.Option{oidctest.WithUser(alice), oidctest.WithUser(bob), oidctest.WithUser(eve),
		oidctest.WithDeviceFlow(time.Minute, 200*time.Millisecond)}, opts...)
	idp := oidctest.New(t, opts...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	redirect := "https://" + ln.Addr().String() + wire.PathLoginCallback
	idp.AddClient(clientID, clientSecret, redirect)

	dir := filepath.Join(t.TempDir(), "state")
	if _, err := ca.Init(dir, ca.InitOptions{TrustDomain: testTrustDomain}); err != nil {
		t.Fatal(err)
	}
	caFile := idp.CAFile()
	editConfig(t, dir, func(cfg *ca.Config) {
		cfg.OIDC = &ca.OIDCConfig{
			Issuer: idp.Issuer(), ClientID: clientID, ClientSecret: clientSecret, RedirectURL: redirect,
			AllowedDomains: []string{"corp.example"}, CAFile: caFile,
		}
		if edit != nil {
			edit(cfg.OIDC)
		}
	})
	return dir, idp, ln
}

// newLoginEnv starts the provider and a CA whose config.json points at it;
// edit may change the OIDC settings before the CA opens.
func newLoginEnv(t *testing.T, edit func(*ca.OIDCConfig), opts ...oidctest.Option) *loginEnv {
	t.Helper()
	dir, idp, ln := newOIDCState(t, edit, opts...)
	clk := &testclock.Clock{}
	logs := &logbuf.Buffer{}
	c, err := ca.Open(dir, ca.Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Now: clk.Now})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	srv := startTLS(t, c.Handler(), ln, c.Roots().Pool(), c.GetCertificate)
	return &loginEnv{testEnv: &testEnv{Dir: dir, CA: c, Clock: clk, Srv: srv, nextIndex: 1}, IdP: idp, Logs: logs}
}

// enrolled returns a device enrolled with a fresh token.
func (e *loginEnv) enrolled(t *testing.T, host string) *testDevice {
	t.Helper()
	d := newTestDevice(t, host)
	e.Enroll(t, d, e.Token(t))
	return d
}

// start begins a login for d (over mTLS, with a CSR signed by its key).
func (e *loginEnv) start(t *testing.T, d *testDevice, deviceFlow bool) wire.LoginStartResponse {
	t.Helper()
	st, body := e.Post(t, e.Client(t, d.TLSCertificate(t)), wire.PathLoginStart, wire.LoginStartRequest{CSR: d.CSR(t), DeviceFlow: deviceFlow})
	return decodeOK[wire.LoginStartResponse](t, st, body)
}

// browse logs user in at the provider and delivers the redirect to the
// CA's callback, returning the page's status and text.
func (e *loginEnv) browse(t *testing.T, authURL string, user oidctest.User) (int, string) {
	t.Helper()
	redirect, err := e.IdP.Login(t.Context(), authURL, user.Email, user.Password)
	if err != nil {
		t.Fatalf("logging in at the provider: %v", err)
	}
	return e.callback(t, redirect)
}

func (e *loginEnv) callback(t *testing.T, u *url.URL) (int, string) {
	t.Helper()
	if !strings.HasSuffix(u.Path, wire.PathLoginCallback) {
		t.Fatalf("provider redirected to %s, not the CA's callback", u)
	}
	resp, err := e.Client(t).Get(u.String())
	if err != nil {
		t.Fatalf("GET callback: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (e *loginEnv) poll(t *testing.T, d *testDevice, id string) wire.LoginPollResponse {
	t.Helper()
	st, body := e.Post(t, e.Client(t, d.TLSCertificate(t)), wire.PathLoginPoll, wire.LoginPollRequest{LoginID: id})
	return decodeOK[wire.LoginPollResponse](t, st, body)
}

// verifyPair checks the user certificate the way a peer does: in a bundle
// with d's machine certificate, against the pinned root.
func (e *loginEnv) verifyPair(t *testing.T, d *testDevice, userDER []byte) certs.Identity {
	t.Helper()
	b, err := certs.ParseBundle(certs.WireBundle{Machine: d.Resp.Bundle.Machine, Intermediates: d.Resp.Bundle.Intermediates, User: userDER})
	if err != nil {
		t.Fatal(err)
	}
	id, err := certs.Verify(b, e.CA.Roots(), nil, time.Now())
	if err != nil {
		t.Fatalf("bundle with user certificate: %v", err)
	}
	if id.User == nil {
		t.Fatalf("user certificate not accepted: %v", id.UserRejected)
	}
	return id
}

// userCerts counts the user certificates the CA recorded.
func (e *loginEnv) users(t *testing.T) []store.User {
	t.Helper()
	us, err := e.CA.Users(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return us
}

func TestLoginCodeFlow(t *testing.T) {
	e := newLoginEnv(t, nil)
	d := e.enrolled(t, "laptop")
	start := e.start(t, d, false)
	au, err := url.Parse(start.AuthURL)
	if err != nil {
		t.Fatal(err)
	}
	q := au.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") == "" {
		t.Fatalf("authorization URL lacks PKCE, nonce or state: %s", start.AuthURL)
	}
	status, page := e.browse(t, start.AuthURL, alice)
	if status != http.StatusOK || !strings.Contains(page, "Signed in as alice@corp.example") {
		t.Fatalf("callback page: %d %s", status, page)
	}
	res := e.poll(t, d, start.LoginID)
	if res.Status != wire.LoginDone || len(res.UserCert) == 0 {
		t.Fatalf("poll: %+v", res)
	}
	id := e.verifyPair(t, d, res.UserCert)
	u := id.User
	if u.Email != "alice@corp.example" || !slices.Equal(u.Groups, []certs.Group{"db-admins", "eng"}) {
		t.Fatalf("user identity %+v, want alice in db-admins and eng (from the provider's claims)", u)
	}
	if u.UserID != certs.DeriveUserID(e.IdP.Issuer(), alice.Subject) {
		t.Fatalf("user ID %s is not derived from the provider's issuer and subject", u.UserID)
	}
	if id.DisplayName() != "alice@corp.example on laptop" {
		t.Fatalf("display name %q", id.DisplayName())
	}
	// Default lifetime: 12 hours.
	if life := u.NotAfter.Sub(time.Now()); life < 11*time.Hour || life > 12*time.Hour+time.Minute {
		t.Fatalf("user certificate lives %s, want about 12h", life)
	}
	// The callback cannot be replayed: its state is spent.
	if st, page := e.callback(t, mustURL(t, e.IdP, start)); st == http.StatusOK || !strings.Contains(page, "already used") {
		t.Fatalf("replayed callback: %d %s", st, page)
	}
	if us := e.users(t); len(us) != 1 || us[0].State != store.UserApproved || us[0].Devices[d.ID] == "" {
		t.Fatalf("user records %+v", us)
	}
}

// mustURL rebuilds a callback URL for a login's state with a dummy code.
func mustURL(t *testing.T, _ *oidctest.Provider, start wire.LoginStartResponse) *url.URL {
	au, _ := url.Parse(start.AuthURL)
	cb, err := url.Parse(au.Query().Get("redirect_uri"))
	if err != nil {
		t.Fatal(err)
	}
	cb.RawQuery = url.Values{"state": {au.Query().Get("state")}, "code": {"replayed"}}.Encode()
	return cb
}

func TestLoginRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		attack oidctest.Attack
		user   oidctest.User
		edit   func(*ca.OIDCConfig)
		code   ca.Code
		msg    string
	}{
		{name: "wrong issuer", attack: oidctest.Attack{Issuer: "https://evil.example"}, code: ca.CodeBadIDToken, msg: "wrong issuer"},
		{name: "wrong audience", attack: oidctest.Attack{Audience: []string{"another-client"}}, code: ca.CodeBadIDToken, msg: "wrong audience"},
		{name: "expired token", attack: oidctest.Attack{Expired: true}, code: ca.CodeBadIDToken, msg: "expired"},
		{name: "wrong nonce", attack: oidctest.Attack{Nonce: "not-this-login"}, code: ca.CodeBadIDToken, msg: "nonce does not match"},
		{name: "missing nonce", attack: oidctest.Attack{DropNonce: true}, code: ca.CodeBadIDToken, msg: "no nonce"},
		{name: "email not verified", attack: oidctest.Attack{EmailUnverified: true}, code: ca.CodeLoginRefused, msg: "email_verified"},
		{name: "key not in JWKS", attack: oidctest.Attack{Key: oidctest.KeyRogue}, code: ca.CodeBadIDToken, msg: "signature"},
		{name: "rogue key under the real key ID", attack: oidctest.Attack{Key: oidctest.KeyRogueSameKID}, code: ca.CodeBadIDToken, msg: "signature"},
		{name: "unsigned token", attack: oidctest.Attack{Key: oidctest.KeyNone}, code: ca.CodeBadIDToken},
		{name: "no ID token", attack: oidctest.Attack{Response: map[string]any{"id_token": nil}}, code: ca.CodeBadIDToken, msg: "no ID token"},
		{name: "domain not allowed", user: eve, code: ca.CodeLoginRefused, msg: "domain elsewhere.example is not allowed"},
		{name: "group not allowed", user: bob, edit: func(o *ca.OIDCConfig) { o.AllowedGroups = []string{"eng"} },
			code: ca.CodeLoginRefused, msg: "none of the allowed groups"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newLoginEnv(t, tc.edit)
			d := e.enrolled(t, "laptop")
			e.IdP.SetAttack(tc.attack)
			user := tc.user
			if user.Subject == "" {
				user = alice
			}
			start := e.start(t, d, false)
			status, page := e.browse(t, start.AuthURL, user)
			if status == http.StatusOK {
				t.Fatalf("callback accepted the login: %s", page)
			}
			res := e.poll(t, d, start.LoginID)
			t.Logf("refused: %s: %s", res.Code, res.Message)
			if res.Status != wire.LoginFailed || res.Code != string(tc.code) || len(res.UserCert) != 0 {
				t.Fatalf("poll = %+v, want failed with %s and no certificate", res, tc.code)
			}
			if !strings.Contains(strings.ToLower(res.Message), strings.ToLower(tc.msg)) || !strings.Contains(page, "Login failed") {
				t.Fatalf("message %q (page %q) does not say %q", res.Message, page, tc.msg)
			}
			if us := e.users(t); len(us) != 0 {
				t.Fatalf("a refused login recorded users: %+v", us)
			}
		})
	}
}

// A login completed on one device cannot finish another device's login:
// the code is bound to its PKCE verifier and the token to its nonce.
func TestLoginReplayOnSecondDevice(t *testing.T) {
	e := newLoginEnv(t, nil)
	a, b := e.enrolled(t, "laptop-a"), e.enrolled(t, "laptop-b")
	startA, startB := e.start(t, a, false), e.start(t, b, false)

	// The code alice obtained for A, delivered with B's state.
	redirect, err := e.IdP.Login(t.Context(), startA.AuthURL, alice.Email, alice.Password)
	if err != nil {
		t.Fatal(err)
	}
	stolen := *redirect
	q := stolen.Query()
	q.Set("state", mustURL(t, e.IdP, startB).Query().Get("state"))
	stolen.RawQuery = q.Encode()
	if st, page := e.callback(t, &stolen); st == http.StatusOK {
		t.Fatalf("A's code finished B's login: %s", page)
	}
	if res := e.poll(t, b, startB.LoginID); res.Status != wire.LoginFailed || len(res.UserCert) != 0 {
		t.Fatalf("B's login: %+v", res)
	}

	// A provider (or a thief) handing B's login the ID token of A's login:
	// the nonce is A's.
	startB2 := e.start(t, b, false)
	nonceA := mustQuery(t, startA.AuthURL, "nonce")
	e.IdP.SetAttack(oidctest.Attack{Nonce: nonceA})
	st, page := e.browse(t, startB2.AuthURL, alice)
	res := e.poll(t, b, startB2.LoginID)
	if st == http.StatusOK || res.Status != wire.LoginFailed || !strings.Contains(res.Message, "nonce does not match") {
		t.Fatalf("token of A's login accepted for B: %d %s %+v", st, page, res)
	}
	// B cannot poll A's login.
	if st, body := e.Post(t, e.Client(t, b.TLSCertificate(t)), wire.PathLoginPoll, wire.LoginPollRequest{LoginID: startA.LoginID}); st != http.StatusNotFound {
		t.Fatalf("B polled A's login: %d %s", st, body)
	}
}

func mustQuery(t *testing.T, raw, key string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Query().Get(key) == "" {
		t.Fatalf("%s has no %s", raw, key)
	}
	return u.Query().Get(key)
}

func TestLoginIdPDown(t *testing.T) {
	e := newLoginEnv(t, nil)
	d := e.enrolled(t, "laptop")
	e.IdP.SetDown(true)
	st, body := e.Post(t, e.Client(t, d.TLSCertificate(t)), wire.PathLoginStart, wire.LoginStartRequest{CSR: d.CSR(t)})
	wantRefusal(t, st, body, http.StatusBadGateway, ca.CodeIdPUnavailable, "identity provider", "unavailable")
	// The CA stays up for everything else.
	if st, _ := e.Post(t, e.Client(t), wire.PathNonce, []byte{}); st != http.StatusOK {
		t.Fatalf("nonce while the provider is down: %d", st)
	}
	e.IdP.SetDown(false)
	start := e.start(t, d, false)
	if st, page := e.browse(t, start.AuthURL, alice); st != http.StatusOK {
		t.Fatalf("login after the provider came back: %d %s", st, page)
	}
	if res := e.poll(t, d, start.LoginID); res.Status != wire.LoginDone {
		t.Fatalf("poll: %+v", res)
	}
}

func TestLoginDeviceFlow(t *testing.T) {
	e := newLoginEnv(t, nil)
	d := e.enrolled(t, "headless")
	start := e.start(t, d, true)
	if start.UserCode == "" || start.VerificationURI == "" || start.AuthURL != "" {
		t.Fatalf("device flow start: %+v", start)
	}
	if err := e.IdP.DeviceLogin(t.Context(), start.UserCode, bob.Email, bob.Password, true); err != nil {
		t.Fatal(err)
	}
	var res wire.LoginPollResponse
	for range 5 {
		if res = e.poll(t, d, start.LoginID); res.Status == wire.LoginDone {
			break
		}
	}
	if res.Status != wire.LoginDone {
		t.Fatalf("poll: %+v", res)
	}
	if id := e.verifyPair(t, d, res.UserCert); id.User.Email != "bob@corp.example" {
		t.Fatalf("user %+v", id.User)
	}
}

func TestLoginApproval(t *testing.T) {
	e := newLoginEnv(t, func(o *ca.OIDCConfig) { o.RequireApproval = true })
	d := e.enrolled(t, "laptop")
	start := e.start(t, d, false)
	st, page := e.browse(t, start.AuthURL, alice)
	if st != http.StatusOK || !strings.Contains(page, "approve") {
		t.Fatalf("callback: %d %s", st, page)
	}
	res := e.poll(t, d, start.LoginID)
	if res.Status != wire.LoginAwaitingApproval || len(res.UserCert) != 0 {
		t.Fatalf("poll before approval: %+v", res)
	}
	if us := e.users(t); len(us) != 1 || us[0].State != store.UserPending {
		t.Fatalf("users %+v", us)
	}
	if _, err := e.CA.ApproveUser(t.Context(), "alice@corp.example"); err != nil {
		t.Fatal(err)
	}
	if res = e.poll(t, d, start.LoginID); res.Status != wire.LoginDone {
		t.Fatalf("poll after approval: %+v", res)
	}
	e.verifyPair(t, d, res.UserCert)
	// Removing the user makes the next login a first login again.
	if _, err := e.CA.RemoveUser(t.Context(), "alice@corp.example"); err != nil {
		t.Fatal(err)
	}
	start = e.start(t, d, false)
	e.browse(t, start.AuthURL, alice)
	if res = e.poll(t, d, start.LoginID); res.Status != wire.LoginAwaitingApproval {
		t.Fatalf("login after removal: %+v", res)
	}
}

// The certificate does not outlive the provider's session when the token
// response says when it ends (Keycloak's refresh_expires_in).
func TestLoginCappedBySession(t *testing.T) {
	e := newLoginEnv(t, nil)
	d := e.enrolled(t, "laptop")
	e.IdP.SetAttack(oidctest.Attack{Response: map[string]any{"refresh_expires_in": 1800}})
	start := e.start(t, d, false)
	e.browse(t, start.AuthURL, alice)
	res := e.poll(t, d, start.LoginID)
	if res.Status != wire.LoginDone {
		t.Fatalf("poll: %+v", res)
	}
	if life := time.Until(res.NotAfter); life > 31*time.Minute || life < 29*time.Minute {
		t.Fatalf("user certificate lives %s, want the provider's 30 minute session", life)
	}
}

func TestLoginStartRefusals(t *testing.T) {
	e := newLoginEnv(t, nil)
	d := e.enrolled(t, "laptop")
	// Without a machine certificate.
	st, body := e.Post(t, e.Client(t), wire.PathLoginStart, wire.LoginStartRequest{CSR: d.CSR(t)})
	wantRefusal(t, st, body, http.StatusForbidden, ca.CodeForbidden, "machine certificate")
	// A CSR signed by another key than the device key.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	st, body = e.Post(t, e.Client(t, d.TLSCertificate(t)), wire.PathLoginStart, wire.LoginStartRequest{CSR: csrFor(t, crypto.Signer(other), nil)})
	wantRefusal(t, st, body, http.StatusBadRequest, ca.CodeBadCSR, "device key")
	// A revoked device.
	if _, err := e.CA.Revoke(t.Context(), d.ID); err != nil {
		t.Fatal(err)
	}
	st, body = e.Post(t, e.Client(t, d.TLSCertificate(t)), wire.PathLoginStart, wire.LoginStartRequest{CSR: d.CSR(t)})
	wantRefusal(t, st, body, http.StatusForbidden, ca.CodeForbidden, "revoked")
}

func TestLoginDisabledWithoutOIDC(t *testing.T) {
	e := newTestEnv(t)
	d := newTestDevice(t, "laptop")
	e.Enroll(t, d, e.Token(t))
	st, body := e.Post(t, e.Client(t, d.TLSCertificate(t)), wire.PathLoginStart, wire.LoginStartRequest{CSR: d.CSR(t)})
	wantRefusal(t, st, body, http.StatusNotImplemented, ca.CodeLoginDisabled, "no identity provider")
}

var _ = x509.ParseCertificate
var _ context.Context
