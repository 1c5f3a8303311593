package console_test

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/meshlab"
)

// post sends a console form with the page's CSRF token from the
// console's own origin.
func (f *fixture) post(t *testing.T, b *http.Client, path string, form url.Values) (*http.Response, string) {
	t.Helper()
	_, page := f.do(t, b, http.MethodGet, "/admin/devices", nil, nil)
	form.Set("csrf", csrfOf(t, page))
	return f.do(t, b, http.MethodPost, path, form, http.Header{"Origin": {f.base}, "Sec-Fetch-Site": {"same-origin"}})
}

var secretRE = regexp.MustCompile(`<code class="secret">([^<]+)</code>`)

// TestConsoleTokens: a batch of tokens is made through the admin API and
// shown once, on the answer to the POST; the list shows none of them;
// revoking one through the console revokes it at the CA.
func TestConsoleTokens(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	b := f.browser(t)
	f.signIn(t, b, alice)
	resp, page := f.post(t, b, "/admin/tokens", url.Values{"count": {"3"}, "tags": {"tag:laptop"}, "ttl": {"2h"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("create: %s\n%s", resp.Status, page)
	}
	shown := secretRE.FindAllStringSubmatch(page, -1)
	if len(shown) != 3 {
		t.Fatalf("%d tokens shown, want 3:\n%s", len(shown), page)
	}
	toks, err := f.lab.Server.CA.Tokens(t.Context())
	if err != nil || len(toks) != 3 {
		t.Fatalf("the CA holds %d tokens (%v), want 3", len(toks), err)
	}
	for _, tok := range toks {
		if len(tok.Tags) != 1 || tok.Tags[0] != "laptop" || tok.State != ca.TokenUnused {
			t.Errorf("token %+v", tok)
		}
	}
	_, list := f.do(t, b, http.MethodGet, "/admin/tokens", nil, nil)
	for _, m := range shown {
		if strings.Contains(list, m[1]) {
			t.Errorf("the token list shows a token's secret")
		}
	}
	if resp, page := f.post(t, b, "/admin/tokens", url.Values{"count": {"0"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("count 0: %s\n%s", resp.Status, page)
	}
	if toks, _ := f.lab.Server.CA.Tokens(t.Context()); len(toks) != 3 {
		t.Fatalf("a refused form made tokens: %d", len(toks))
	}
	id := toks[0].ID
	if resp, _ := f.post(t, b, "/admin/tokens/"+id+"/revoke", url.Values{}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke token: %s", resp.Status)
	}
	toks, _ = f.lab.Server.CA.Tokens(t.Context())
	for _, tok := range toks {
		if (tok.ID == id) != (tok.State == ca.TokenRevoked) {
			t.Errorf("after revoking %s: %s is %s", id, tok.ID, tok.State)
		}
	}
	if resp, _ := f.do(t, b, http.MethodGet, "/admin/users", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("users: %s", resp.Status)
	}
}

// TestConsolePolicyPublish: a policy whose tests fail is refused by the
// CA (the version stays), a good one is published as the next version.
func TestConsolePolicyPublish(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	b := f.browser(t)
	f.signIn(t, b, alice)
	resp, page := f.do(t, b, http.MethodGet, "/admin/policy", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "4 tests, 0 failing") {
		t.Fatalf("policy page: %s\n%s", resp.Status, page)
	}
	cur, err := f.lab.Server.CA.CurrentPolicy()
	if err != nil {
		t.Fatal(err)
	}
	failing := strings.Replace(cur.Source, `"proto": "icmp", "expect": "accept"`, `"proto": "icmp", "expect": "drop"`, 1)
	if failing == cur.Source {
		t.Fatal("could not break a test of the starter policy")
	}
	// Checking the edit runs its tests and shows the change, publishing
	// nothing.
	resp, page = f.post(t, b, "/admin/policy/check", url.Values{"source": {failing}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "4 tests, 1 failing: publishing would be refused") ||
		!strings.Contains(page, `<span class="ddel">- `) || !strings.Contains(page, `<span class="dadd">&#43; `) {
		t.Fatalf("check: %s\n%s", resp.Status, page)
	}
	if now, _ := f.lab.Server.CA.CurrentPolicy(); now.Version != cur.Version {
		t.Fatalf("a check published version %d", now.Version)
	}
	resp, page = f.post(t, b, "/admin/policy", url.Values{"source": {failing}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Publishing: ") {
		t.Fatalf("failing policy: %s\n%s", resp.Status, page)
	}
	if now, _ := f.lab.Server.CA.CurrentPolicy(); now.Version != cur.Version {
		t.Fatalf("a policy with a failing test was published as version %d", now.Version)
	}
	good := strings.Replace(cur.Source, "starter: every device to every device", "everyone to everyone", 1)
	if resp, page := f.post(t, b, "/admin/policy", url.Values{"source": {good}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("publish: %s\n%s", resp.Status, page)
	}
	if now, _ := f.lab.Server.CA.CurrentPolicy(); now.Version != cur.Version+1 || now.Source != good {
		t.Fatalf("after publishing: version %d", now.Version)
	}
}

// TestConsoleDeny: denying a waiting enrollment through the console
// denies it at the CA with the reason, which the agent is told; a deny
// without the CSRF token leaves it waiting.
func TestConsoleDeny(t *testing.T) {
	f := newFixture(t, fixtureOptions{approval: true})
	errc := make(chan error, 1)
	go func() {
		_, err := f.lab.StartNode(t, "stranger", meshlab.NodeOptions{Wait: time.Minute})
		errc <- err
	}()
	p := waitWaiting(t, f, "stranger")
	b := f.browser(t)
	f.signIn(t, b, alice)
	_, page := f.do(t, b, http.MethodGet, "/admin/pending", nil, nil)
	if !strings.Contains(page, p.ID) || !strings.Contains(page, p.DeviceKeyFP) {
		t.Fatalf("the approvals page lacks the request and its evidence:\n%s", page)
	}
	path := "/admin/pending/" + p.ID + "/deny"
	if resp, _ := f.do(t, b, http.MethodPost, path, url.Values{"reason": {"unknown laptop"}}, http.Header{"Origin": {f.base}}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("deny without a token: %s", resp.Status)
	}
	if got := waitWaiting(t, f, "stranger"); got.State != store.PendingWaiting {
		t.Fatalf("after a refused deny: %s", got.State)
	}
	if resp, page := f.post(t, b, path, url.Values{"reason": {"unknown laptop"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("deny: %s\n%s", resp.Status, page)
	}
	err := <-errc
	if err == nil || !strings.Contains(err.Error(), "unknown laptop") {
		t.Fatalf("the agent's enrollment: %v, want the denial with its reason", err)
	}
	list, _ := f.lab.Server.CA.Pending(t.Context())
	if len(list) != 1 || list[0].State != store.PendingDenied || list[0].Reason != "unknown laptop" {
		t.Fatalf("pending after the deny: %+v", list)
	}
	if !strings.Contains(f.log.String(), `action="deny enrollment"`) {
		t.Errorf("the deny is not in the server's log")
	}
}

// TestConsoleLogPages: the log page shows the newest 100 entries and
// links to the older ones.
func TestConsoleLogPages(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	cur, err := f.lab.Server.CA.CurrentPolicy()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 { // 100 policy entries after the starter's: 101
		src := strings.Replace(cur.Source, "starter: every device to every device", fmt.Sprintf("version %d", i+2), 1)
		if _, err := f.lab.Server.CA.PublishPolicy(t.Context(), []byte(src)); err != nil {
			t.Fatal(err)
		}
	}
	b := f.browser(t)
	f.signIn(t, b, alice)
	_, page := f.do(t, b, http.MethodGet, "/admin/log", nil, nil)
	if !strings.Contains(page, `id="entry-100"`) || !strings.Contains(page, `id="entry-1"`) || strings.Contains(page, `id="entry-0"`) ||
		!strings.Contains(page, `href="/admin/log?page=1"`) || !strings.Contains(page, "Verified: 101 entries") {
		t.Fatalf("first log page:\n%s", page)
	}
	_, page = f.do(t, b, http.MethodGet, "/admin/log?page=1", nil, nil)
	if !strings.Contains(page, `id="entry-0"`) || strings.Contains(page, `id="entry-1"`) || !strings.Contains(page, `href="/admin/log?page=0"`) {
		t.Fatalf("second log page:\n%s", page)
	}
}

func userState(t *testing.T, f *fixture, email string) store.UserState {
	t.Helper()
	us, err := f.lab.Server.CA.Users(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		if string(u.Email) == email {
			return u.State
		}
	}
	return ""
}

// TestConsoleUsers: bob's first login waits; approved through the console
// he logs in; revoked through it he cannot.
func TestConsoleUsers(t *testing.T) {
	f := newFixture(t, fixtureOptions{users: true})
	n := f.lab.AddNode(t, "bobs-laptop", meshlab.NodeOptions{})
	// bob signs in on his laptop (certmesh login): the CA holds it.
	st, err := n.Client.Login(t.Context(), agent.LoginRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cb, err := f.idp.Login(t.Context(), st.AuthURL, bob.Email, bob.Password)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.lab.Browser().Get(cb.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	meshlab.Eventually(t, 30*time.Second, "bob's login waiting for approval", func() error {
		if s := userState(t, f, bob.Email); s != store.UserPending {
			return fmt.Errorf("bob is %q", s)
		}
		return nil
	})
	b := f.browser(t)
	f.signIn(t, b, alice)
	_, page := f.do(t, b, http.MethodGet, "/admin/users", nil, nil)
	us, _ := f.lab.Server.CA.Users(t.Context())
	if len(us) != 1 || !strings.Contains(page, bob.Email) || !strings.Contains(page, "/admin/users/"+string(us[0].ID)+"/approve") {
		t.Fatalf("users page:\n%s", page)
	}
	ref := string(us[0].ID)
	if resp, _ := f.do(t, b, http.MethodPost, "/admin/users/"+ref+"/approve", url.Values{}, http.Header{"Origin": {f.base}}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("approve without a token: %s", resp.Status)
	}
	if st := userState(t, f, bob.Email); st != store.UserPending {
		t.Fatalf("bob after a refused approve: %s", st)
	}
	if resp, _ := f.post(t, b, "/admin/users/"+ref+"/approve", url.Values{}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approve: %s", resp.Status)
	}
	meshlab.Eventually(t, 30*time.Second, "bob's login done once approved", func() error {
		ls, err := n.Client.LoginStatus(t.Context())
		if err != nil || ls.Status != wire.LoginDone {
			return fmt.Errorf("login: %+v %v", ls, err)
		}
		return nil
	})
	if resp, _ := f.post(t, b, "/admin/users/"+ref+"/revoke", url.Values{}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %s", resp.Status)
	}
	if st := userState(t, f, bob.Email); st != store.UserRevoked {
		t.Fatalf("bob after the revoke: %s", st)
	}
	err = f.lab.Login(t, n, bob)
	t.Logf("login once revoked: %v", err)
	if err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("bob's login once revoked: %v", err)
	}
}
