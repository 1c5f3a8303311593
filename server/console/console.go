// Package console is the admin web console of certmesh-server, served under
// /admin/ on the server's HTTPS port: sign-in through the CA's OpenID
// Provider restricted to oidc.admin_groups, server-rendered pages
// (html/template, no script), and every action a call to the same admin
// API the CLI uses over admin.sock (ca.AdminClient, in-process): the
// console adds no capability of its own.
package console

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
)

// Prefix is where the console is served.
const Prefix = "/admin/"

// CallbackPath is the console's OpenID Connect redirect path; the provider
// must accept https://<server>/admin/callback.
const CallbackPath = Prefix + "callback"

// DefaultSessionTTL is how long a console session lasts after sign-in.
const DefaultSessionTTL = 8 * time.Hour

// Options configure the console.
type Options struct {
	// OIDC is the CA's provider configuration; the console is on only when
	// it is set and names AdminGroups.
	OIDC *ca.OIDCConfig
	// Admin is the CA's admin API (ca.CA.AdminHandler), called in-process.
	Admin http.Handler
	// Log is the CA's transparency log API (ca.CA.LogHandler).
	Log http.Handler
	// LogKey pins the log's verifier key (ca.CA.LogKey).
	LogKey string
	Roots  *certs.Roots
	// Intermediate, PolicyDoc and Connected feed the pictures (optional):
	// the CA's intermediate certificate, its signed policy document, and
	// the devices holding a coordinator watch now.
	Intermediate func() *x509.Certificate
	PolicyDoc    func() []byte
	Connected    func() []certs.DeviceID
	// Logger logs every sign-in and action with who did it.
	Logger *slog.Logger
	// Now is the clock (sessions, ID tokens); time.Now if nil.
	Now func() time.Time
	// SessionTTL is a session's life (default DefaultSessionTTL).
	SessionTTL time.Duration
}

// Console serves the admin web console.
type Console struct {
	o        Options
	admin    *ca.AdminClient
	rp       *relyingParty // nil: the console is off
	sessions *sessions
	logins   *loginSealer
	xorigin  *http.CrossOriginProtection
	mux      *http.ServeMux
}

// Enabled reports whether o turns the console on.
func Enabled(o *ca.OIDCConfig) bool { return o != nil && len(o.AdminGroups) > 0 }

// New returns the console; with SSO or admin groups not configured it is
// off and every page says how to turn it on.
func New(o Options) (*Console, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	c := &Console{o: o, xorigin: http.NewCrossOriginProtection(), mux: http.NewServeMux()}
	if !Enabled(o.OIDC) {
		c.mux.HandleFunc("/", c.off)
		return c, nil
	}
	if o.Admin == nil || o.Log == nil || o.Roots == nil {
		return nil, fmt.Errorf("console: the admin API, the log API and the roots are required")
	}
	rp, err := newRelyingParty(*o.OIDC, o.Now)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	c.rp, c.admin, c.sessions = rp, ca.NewAdminClientFor(o.Admin), newSessions(o.Now, o.SessionTTL)
	c.logins = newLoginSealer(o.Now)
	c.routes()
	return c, nil
}

// Handler serves the console; mount it at Prefix.
func (c *Console) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secureHeaders(w.Header())
		c.mux.ServeHTTP(w, r)
	})
}

// ContentSecurityPolicy is sent with every console answer: nothing but the
// console's own style sheet and images, no script at all, no framing,
// forms only to itself.
const ContentSecurityPolicy = "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func secureHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: with no-referrer a browser sends
	// "Origin: null" on a POST, which the origin check refuses.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// off answers every request while the console is off.
func (c *Console) off(w http.ResponseWriter, r *http.Request) {
	render(w, http.StatusNotFound, "off", page{Title: "Console off", Data: CallbackPath})
}

// callbackURL is the console's redirect URL: the scheme and host of the
// CA's own (oidc.redirect_url) with CallbackPath.
func callbackURL(o ca.OIDCConfig) (string, error) {
	u, err := url.Parse(o.RedirectURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("oidc.redirect_url %q: want an https URL", o.RedirectURL)
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: CallbackPath}).String(), nil
}

// actionLog logs what an admin did through the console.
func (c *Console) actionLog(ctx context.Context, s *session, action, target string, err error) {
	args := []any{"by", s.Email, "subject", s.Subject, "action", action, "target", target}
	if err != nil {
		c.o.Logger.WarnContext(ctx, "console action refused", append(args, "err", err)...)
		return
	}
	c.o.Logger.InfoContext(ctx, "console action", args...)
}
