package console_test

import (
	"context"
	"fmt"
	"html"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/audit"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/translog"
	"github.com/certmesh/certmesh/tstest/browsertest"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/oidctest"
	"github.com/chromedp/chromedp"
)

// screenshots is where TestConsoleInBrowser saves its pictures of the
// pages: CONSOLE_SCREENSHOTS (docs/console for the README), else a
// temporary directory.
func screenshots(t *testing.T) string {
	if d := os.Getenv("CONSOLE_SCREENSHOTS"); d != "" {
		abs, err := filepath.Abs(d)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	return t.TempDir()
}

// waitWaiting waits until the CA holds a waiting enrollment of host.
func waitWaiting(t *testing.T, f *fixture, host string) store.PendingEnrollment {
	t.Helper()
	var found store.PendingEnrollment
	meshlab.Eventually(t, 30*time.Second, "an enrollment of "+host+" waiting", func() error {
		list, err := f.lab.Server.CA.Pending(t.Context())
		if err != nil {
			return err
		}
		for _, p := range list {
			if string(p.Hostname) == host && p.State == store.PendingWaiting {
				found = p
				return nil
			}
		}
		return fmt.Errorf("none yet")
	})
	return found
}

// startWaiting starts an agent that enrolls and waits for approval; the
// channel gives the node once it enrolled.
func startWaiting(t *testing.T, f *fixture, host string) <-chan *meshlab.InProcNode {
	ch := make(chan *meshlab.InProcNode, 1)
	go func() {
		n, err := f.lab.StartNode(t, host, meshlab.NodeOptions{Wait: time.Minute})
		if err != nil {
			t.Errorf("agent %s: %v", host, err)
		}
		ch <- n
	}()
	return ch
}

// hasPeer reports whether n's WireGuard device has key as a peer.
func hasPeer(t *testing.T, n *meshlab.InProcNode, key certs.WireGuardKey) bool {
	return slices.Contains(n.WireGuardPeers(t), key)
}

// signInBrowser signs u in from the console's sign-in page through the
// provider's login form.
func signInBrowser(t *testing.T, f *fixture, tab context.Context, u oidctest.User) {
	t.Helper()
	browsertest.Do(t, tab,
		chromedp.Navigate(f.base+"/admin/"),
		chromedp.WaitVisible(chromedp.ID("signin")),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), u.Email),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), u.Password),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
	)
}

// TestConsoleInBrowser drives the console in headless Chromium: sign-in
// at the OpenID Provider, approving a waiting device that then joins the
// mesh, revoking it so that it leaves, the log page listing what the
// auditor lists, a non-admin refused and a forged cross-site POST refused.
func TestConsoleInBrowser(t *testing.T) {
	br := browsertest.New(t)
	shots := screenshots(t)
	f := newFixture(t, fixtureOptions{approval: true})

	// desk is approved out of band: the peer that sees laptop come and go.
	deskCh := startWaiting(t, f, "desk")
	if _, err := f.lab.Server.CA.Approve(t.Context(), waitWaiting(t, f, "desk").ID); err != nil {
		t.Fatal(err)
	}
	desk := <-deskCh
	laptopCh := startWaiting(t, f, "laptop")
	waitWaiting(t, f, "laptop")

	tab := br.Tab(t)
	signInBrowser(t, f, tab, alice)
	if who := browsertest.Text(t, tab, "#who"); who != alice.Email {
		t.Fatalf("signed in as %q", who)
	}

	// Approve laptop with the evidence on the page.
	browsertest.Do(t, tab, chromedp.Navigate(f.base+"/admin/pending"), chromedp.WaitVisible(chromedp.ID("pending-laptop")))
	browsertest.Screenshot(t, tab, filepath.Join(shots, "approvals.png"))
	browsertest.Do(t, tab,
		chromedp.SendKeys(chromedp.CSS(`#pending-laptop form[action$="/approve"] input[name=reason]`), "ticket 4711"),
		chromedp.Click(chromedp.CSS(`#pending-laptop button.approve`)),
		chromedp.WaitVisible(chromedp.ID("none-waiting")),
	)
	if msg := browsertest.Text(t, tab, "#flash"); !strings.Contains(msg, "Approved laptop") {
		t.Fatalf("after approving: %q", msg)
	}
	laptop := <-laptopCh
	if laptop == nil {
		t.FailNow()
	}
	meshlab.Eventually(t, 30*time.Second, "desk and laptop peers", func() error {
		if !hasPeer(t, desk, laptop.WireGuardKey()) || !hasPeer(t, laptop, desk.WireGuardKey()) {
			return fmt.Errorf("not yet")
		}
		return nil
	})

	// The mesh picture shows both on the mesh; the chain picture the root
	// agents pin.
	browsertest.Do(t, tab, chromedp.Navigate(f.base+"/admin/mesh"),
		chromedp.WaitVisible(chromedp.CSS(`#node-laptop.connected`)), chromedp.WaitVisible(chromedp.CSS(`#node-desk.connected`)))
	browsertest.Screenshot(t, tab, filepath.Join(shots, "mesh.png"))
	browsertest.Do(t, tab, chromedp.Navigate(f.base+"/admin/chain"), chromedp.WaitVisible(chromedp.ID("chain-intermediate")))
	if root := browsertest.TextContent(t, tab, "#chain-root"); !strings.Contains(root, string(f.lab.Fingerprint)[:24]) {
		t.Errorf("chain picture's root: %q, want the pinned fingerprint %s", root, f.lab.Fingerprint)
	}
	browsertest.Screenshot(t, tab, filepath.Join(shots, "chain.png"))

	// The devices page lists it as enrolled; search finds it.
	browsertest.Do(t, tab, chromedp.Navigate(f.base+"/admin/devices?q=lap"), chromedp.WaitVisible(chromedp.ID("device-laptop")))
	if st := browsertest.Text(t, tab, "#device-laptop .state"); st != "active" {
		t.Fatalf("laptop on the devices page: %q", st)
	}
	if on := browsertest.Text(t, tab, "#device-laptop .online"); on != "connected" {
		t.Fatalf("laptop on the mesh, says the devices page: %q", on)
	}
	browsertest.Do(t, tab, chromedp.WaitNotPresent(chromedp.ID("device-desk")))
	browsertest.Do(t, tab, chromedp.Navigate(f.base+"/admin/devices"), chromedp.WaitVisible(chromedp.ID("device-desk")))
	browsertest.Screenshot(t, tab, filepath.Join(shots, "devices.png"))

	// Revoke it for keyCompromise: it leaves desk's mesh.
	browsertest.Do(t, tab,
		chromedp.SetValue(chromedp.CSS(`#device-laptop select[name=reason]`), "keyCompromise"),
		chromedp.Click(chromedp.CSS(`#device-laptop button.danger`)),
		chromedp.WaitVisible(chromedp.CSS(`#device-laptop.state-revoked`)),
	)
	if msg := browsertest.Text(t, tab, "#flash"); !strings.Contains(msg, "Revoked laptop") || !strings.Contains(msg, "keyCompromise") {
		t.Fatalf("after revoking: %q", msg)
	}
	meshlab.Eventually(t, 30*time.Second, "laptop gone from desk's peers", func() error {
		if hasPeer(t, desk, laptop.WireGuardKey()) {
			return fmt.Errorf("still there")
		}
		return nil
	})
	browsertest.Do(t, tab, chromedp.Navigate(f.base+"/admin/mesh"), chromedp.WaitVisible(chromedp.CSS(`#node-laptop.revoked`)))

	// The log page shows the revocation that the auditor (certmesh audit
	// list: the audit package over the public log endpoints) lists.
	lc, err := translog.NewClient(f.base, audit.HTTPClient(f.lab.Roots, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	a, err := audit.New(audit.Config{Client: lc, Roots: f.lab.Roots})
	if err != nil {
		t.Fatal(err)
	}
	recs, rep, err := a.List(t.Context(), time.Time{})
	if err != nil || !rep.OK() {
		t.Fatalf("audit: %v %+v", err, rep)
	}
	i := slices.IndexFunc(recs, func(r audit.Record) bool {
		return r.Kind == audit.KindRevocation && r.DeviceID == string(laptop.DeviceID())
	})
	if i < 0 {
		t.Fatalf("the auditor lists no revocation of laptop: %+v", recs)
	}
	rev := recs[i]
	browsertest.Do(t, tab, chromedp.Navigate(f.base+"/admin/log"), chromedp.WaitVisible(chromedp.ID(fmt.Sprintf("entry-%d", rev.Index))))
	row := browsertest.Text(t, tab, fmt.Sprintf("#entry-%d", rev.Index))
	for _, want := range []string{"revocation", rev.Serial, "keyCompromise", rev.LeafHash} {
		if !strings.Contains(row, want) {
			t.Errorf("log entry %d on the page lacks %q: %s", rev.Index, want, row)
		}
	}
	browsertest.Do(t, tab, chromedp.WaitReady(chromedp.CSS(fmt.Sprintf("#timeline circle#t-%d.revoked", rev.Index))))
	if v := browsertest.Text(t, tab, "#verified"); !strings.HasPrefix(v, "Verified") {
		t.Errorf("log page: %q", v)
	}
	browsertest.Screenshot(t, tab, filepath.Join(shots, "log.png"))

	// A forged cross-site POST (another site's form, even carrying this
	// session's CSRF token) changes nothing.
	token := csrfTokenIn(t, tab)
	evil := evilSite(t, f.base+"/admin/devices/"+string(desk.DeviceID())+"/revoke", token)
	browsertest.Do(t, tab, chromedp.Navigate(evil), chromedp.WaitVisible(chromedp.ID("go")), chromedp.Click(chromedp.ID("go")))
	if msg := browsertest.Text(t, tab, "#error"); !strings.Contains(msg, "Nothing was changed") {
		t.Fatalf("forged POST: %q", msg)
	}
	if st := deviceState(t, f, desk); st != store.DeviceActive {
		t.Fatalf("desk after a forged POST: %s", st)
	}

	// bob, not an admin, is refused and gets no session.
	bobTab := br.Tab(t)
	signInBrowser(t, f, bobTab, bob)
	if msg := browsertest.Text(t, bobTab, "#error"); !strings.Contains(msg, "admin groups") {
		t.Fatalf("bob: %q", msg)
	}
	browsertest.Screenshot(t, bobTab, filepath.Join(shots, "refused.png"))
	browsertest.Do(t, bobTab, chromedp.Navigate(f.base+"/admin/devices"), chromedp.WaitVisible(chromedp.ID("signin")))
}

// csrfTokenIn reads the CSRF token of the page in tab.
func csrfTokenIn(t *testing.T, tab context.Context) string {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Value(chromedp.CSS(`input[name=csrf]`)))
	if err != nil || v == "" {
		t.Fatalf("no CSRF token on the page: %v", err)
	}
	return v
}

// evilSite serves, on another site (localhost, not 127.0.0.1), a form
// that posts to target; it returns the page's URL.
func evilSite(t *testing.T, target, token string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	page := `<!doctype html><title>prize</title><form method="post" action="` + html.EscapeString(target) + `">` +
		`<input type="hidden" name="reason" value="keyCompromise"><input type="hidden" name="csrf" value="` + html.EscapeString(token) + `">` +
		`<button id="go" type="submit">Claim your prize</button></form>`
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(page))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return "http://localhost:" + port + "/"
}
