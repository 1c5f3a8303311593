package console_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/server/console"
	"github.com/certmesh/certmesh/tstest/meshlab"
)

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	return m[1]
}

// checkHeaders checks the security headers every console answer carries.
func checkHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": console.ContentSecurityPolicy,
		"X-Frame-Options":         "DENY",
		"X-Content-Type-Options":  "nosniff",
		"Cache-Control":           "no-store",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
	csp := h.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'self'", "script-src 'none'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, d) {
			t.Errorf("%s: CSP %q lacks %s", what, csp, d)
		}
	}
}

func deviceState(t *testing.T, f *fixture, n *meshlab.InProcNode) store.DeviceState {
	t.Helper()
	d, err := f.lab.Server.CA.Device(t.Context(), n.DeviceID())
	if err != nil {
		t.Fatal(err)
	}
	return d.State
}

func TestConsoleOffWithoutSSO(t *testing.T) {
	f := newFixture(t, fixtureOptions{noSSO: true})
	n := f.lab.AddNode(t, "laptop", meshlab.NodeOptions{})
	b := f.browser(t)
	resp, page := f.do(t, b, http.MethodGet, "/admin/", nil, nil)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(page, "oidc.admin_groups") || !strings.Contains(page, console.CallbackPath) {
		t.Fatalf("/admin/ without SSO: %s\n%s", resp.Status, page)
	}
	checkHeaders(t, "off page", resp.Header)
	resp, _ = f.do(t, b, http.MethodPost, "/admin/devices/"+string(n.DeviceID())+"/revoke", url.Values{"reason": {"keyCompromise"}}, nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("POST with the console off: %s", resp.Status)
	}
	if st := deviceState(t, f, n); st != store.DeviceActive {
		t.Fatalf("device %s after a POST to the console that is off", st)
	}
}

func TestConsoleSignIn(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	b := f.browser(t)
	resp, page := f.do(t, b, http.MethodGet, "/admin/devices", nil, nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(page, `href="/admin/login"`) {
		t.Fatalf("devices before sign-in: %s\n%s", resp.Status, page)
	}
	checkHeaders(t, "sign-in page", resp.Header)
	resp, page = f.signIn(t, b, alice)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, alice.Email) {
		t.Fatalf("callback: %s\n%s", resp.Status, page)
	}
	var sc *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "__Host-certmesh-console" && c.Value != "" {
			sc = c
		}
	}
	if sc == nil || !sc.Secure || !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/" {
		t.Fatalf("session cookie %+v: want __Host-, Secure, HttpOnly, SameSite=Strict", sc)
	}
	resp, page = f.do(t, b, http.MethodGet, "/admin/devices", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `id="devices"`) {
		t.Fatalf("devices after sign-in: %s\n%s", resp.Status, page)
	}
	checkHeaders(t, "devices page", resp.Header)
	resp, _ = f.do(t, b, http.MethodGet, "/admin/static/console.css", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("style sheet: %s", resp.Status)
	}
	checkHeaders(t, "style sheet", resp.Header)
	if !strings.Contains(f.log.String(), "console sign-in") {
		t.Errorf("the sign-in is not in the server's log")
	}

	// A session cookie the server did not make gets nothing.
	other := f.browser(t)
	u := mustURL(t, f.base)
	other.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-certmesh-console", Value: sc.Value + "x", Path: "/", Secure: true}})
	if resp, _ := f.do(t, other, http.MethodGet, "/admin/devices", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a forged session cookie: %s", resp.Status)
	}
	// Signing out ends the session on the server: the old cookie is dead.
	resp, page = f.do(t, b, http.MethodGet, "/admin/devices", nil, nil)
	if resp, _ := f.do(t, b, http.MethodPost, "/admin/logout", url.Values{"csrf": {csrfOf(t, page)}}, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign out: %s", resp.Status)
	}
	other.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-certmesh-console", Value: sc.Value, Path: "/", Secure: true}})
	if resp, _ := f.do(t, other, http.MethodGet, "/admin/devices", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the session cookie after sign-out: %s", resp.Status)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestConsoleRefusesNonAdmin(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	b := f.browser(t)
	resp, page := f.signIn(t, b, bob)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "admin groups (oidc.admin_groups: "+adminGroup) {
		t.Fatalf("bob's callback: %s\n%s", resp.Status, page)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "__Host-certmesh-console" && c.Value != "" {
			t.Fatalf("bob got a session cookie")
		}
	}
	if resp, _ := f.do(t, b, http.MethodGet, "/admin/devices", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bob's devices page: %s", resp.Status)
	}
	if !strings.Contains(f.log.String(), "not an admin") {
		t.Errorf("the refusal is not in the server's log")
	}
}

func TestConsoleCallbackRefusesForeignState(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	// The attacker starts a sign-in and has the victim's browser deliver
	// the callback (login CSRF): the victim's browser lacks the state's
	// cookie.
	attacker, victim := f.browser(t), f.browser(t)
	resp, _ := f.do(t, attacker, http.MethodGet, "/admin/login", nil, nil)
	cb, err := f.idp.Login(t.Context(), resp.Header.Get("Location"), alice.Email, alice.Password)
	if err != nil {
		t.Fatal(err)
	}
	resp, page := f.do(t, victim, http.MethodGet, cb.RequestURI(), nil, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("callback in another browser: %s\n%s", resp.Status, page)
	}
	if resp, _ := f.do(t, victim, http.MethodGet, "/admin/devices", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("victim signed in by a foreign callback: %s", resp.Status)
	}
	// The browser that started it finishes it, once: a replay of the
	// callback, even with the login cookie, is refused.
	loginCookies := attacker.Jar.Cookies(mustURL(t, f.base))
	if resp, page := f.do(t, attacker, http.MethodGet, cb.RequestURI(), nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("callback in the browser that signed in: %s\n%s", resp.Status, page)
	}
	replay := f.browser(t)
	replay.Jar.SetCookies(mustURL(t, f.base), loginCookies)
	if resp, _ := f.do(t, replay, http.MethodGet, cb.RequestURI(), nil, nil); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a replayed callback: %s", resp.Status)
	}
}

func TestConsoleCSRF(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	n := f.lab.AddNode(t, "laptop", meshlab.NodeOptions{})
	b := f.browser(t)
	f.signIn(t, b, alice)
	_, page := f.do(t, b, http.MethodGet, "/admin/devices", nil, nil)
	token := csrfOf(t, page)
	path := "/admin/devices/" + string(n.DeviceID()) + "/revoke"
	same := http.Header{"Origin": {f.base}, "Sec-Fetch-Site": {"same-origin"}}
	for _, tc := range []struct {
		name string
		form url.Values
		hdr  http.Header
	}{
		{"no token", url.Values{"reason": {"keyCompromise"}}, same},
		{"forged token", url.Values{"reason": {"keyCompromise"}, "csrf": {token[:len(token)-2] + "AA"}}, same},
		{"cross-site", url.Values{"reason": {"keyCompromise"}, "csrf": {token}}, http.Header{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}}},
		{"foreign origin", url.Values{"reason": {"keyCompromise"}, "csrf": {token}}, http.Header{"Origin": {"https://evil.example"}}},
	} {
		resp, page := f.do(t, b, http.MethodPost, path, tc.form, tc.hdr)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "Nothing was changed") {
			t.Errorf("%s: %s\n%s", tc.name, resp.Status, page)
		}
		checkHeaders(t, tc.name, resp.Header)
		if st := deviceState(t, f, n); st != store.DeviceActive {
			t.Fatalf("%s: the device is %s", tc.name, st)
		}
	}
	// Without a session, the right token of another session is no use.
	if resp, _ := f.do(t, f.browser(t), http.MethodPost, path, url.Values{"csrf": {token}}, same); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("no session: %s", resp.Status)
	}
	if st := deviceState(t, f, n); st != store.DeviceActive {
		t.Fatalf("no session: the device is %s", st)
	}
	// The same request with the token, from the console's origin, works.
	resp, _ := f.do(t, b, http.MethodPost, path, url.Values{"reason": {"keyCompromise"}, "csrf": {token}}, same)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %s", resp.Status)
	}
	if st := deviceState(t, f, n); st != store.DeviceRevoked {
		t.Fatalf("after the revoke: the device is %s", st)
	}
	_, page = f.do(t, b, http.MethodGet, "/admin/devices", nil, nil)
	if !strings.Contains(page, "Revoked laptop") {
		t.Errorf("no confirmation on the devices page:\n%s", page)
	}
	// Who did it: the console's log and the admin API's own.
	logs := f.log.String()
	for _, want := range []string{`msg="console action" component=console by=alice@corp.example subject=alice action="revoke device"`,
		`msg="admin command" component=ca method=POST path=` + path + ` by=console:alice@corp.example status=200`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the server's log lacks %q", want)
		}
	}
}

func TestConsoleShowsNoSecrets(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	n := f.lab.AddNode(t, "laptop", meshlab.NodeOptions{})
	unused := f.lab.Token(t)
	b := f.browser(t)
	resp, _ := f.signIn(t, b, alice)
	var session string
	for _, c := range resp.Cookies() {
		if c.Name == "__Host-certmesh-console" {
			session = c.Value
		}
	}
	cfg := f.lab.Server.CA.Config()
	secrets := map[string]string{"enrollment token (used)": n.Token, "enrollment token (unused)": unused,
		"session ID": session, "OIDC client secret": cfg.OIDC.ClientSecret}
	for _, p := range []string{"/admin/devices", "/admin/pending", "/admin/log", "/admin/devices?q=laptop", "/admin/tokens", "/admin/users", "/admin/policy", "/admin/mesh", "/admin/chain"} {
		resp, page := f.do(t, b, http.MethodGet, p, nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", p, resp.Status)
		}
		if strings.Contains(page, "PRIVATE KEY") {
			t.Errorf("%s shows a private key", p)
		}
		for what, s := range secrets {
			if s != "" && strings.Contains(page, s) {
				t.Errorf("%s shows the %s", p, what)
			}
		}
	}
}
