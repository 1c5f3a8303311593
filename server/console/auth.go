package console

import (
	"errors"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/policy"
	"net/http"
	"strings"
)

// maxForm bounds a console form (a policy source is the largest).
const maxForm = 3*policy.MaxSize + 4096

func (c *Console) routes() {
	m := c.mux
	m.Handle("GET "+Prefix+"static/", http.StripPrefix(Prefix, http.FileServerFS(staticFS)))
	m.HandleFunc("GET "+Prefix+"{$}", c.home)
	m.HandleFunc("GET "+Prefix+"login", c.login)
	m.HandleFunc("GET "+CallbackPath, c.callback)
	m.HandleFunc("POST "+Prefix+"logout", c.post(c.logout))
	m.HandleFunc("GET "+Prefix+"devices", c.get(c.devices))
	m.HandleFunc("POST "+Prefix+"devices/{id}/revoke", c.post(c.revoke))
	m.HandleFunc("GET "+Prefix+"pending", c.get(c.pending))
	m.HandleFunc("POST "+Prefix+"pending/{id}/approve", c.post(c.approve))
	m.HandleFunc("POST "+Prefix+"pending/{id}/deny", c.post(c.deny))
	m.HandleFunc("GET "+Prefix+"log", c.get(c.logPage))
	m.HandleFunc("GET "+Prefix+"tokens", c.get(c.tokens))
	m.HandleFunc("POST "+Prefix+"tokens", c.post(c.createTokens))
	m.HandleFunc("POST "+Prefix+"tokens/{id}/revoke", c.post(c.revokeToken))
	m.HandleFunc("GET "+Prefix+"users", c.get(c.users))
	m.HandleFunc("POST "+Prefix+"users/{ref}/approve", c.post(c.userAction("Approve", (*ca.AdminClient).ApproveUser)))
	m.HandleFunc("POST "+Prefix+"users/{ref}/revoke", c.post(c.userAction("Revoke", (*ca.AdminClient).RevokeUser)))
	m.HandleFunc("POST "+Prefix+"users/{ref}/remove", c.post(c.userAction("Remove", (*ca.AdminClient).RemoveUser)))
	m.HandleFunc("GET "+Prefix+"policy", c.get(c.policyPage))
	m.HandleFunc("GET "+Prefix+"mesh", c.get(c.mesh))
	m.HandleFunc("GET "+Prefix+"chain", c.get(c.chain))
	m.HandleFunc("POST "+Prefix+"policy", c.post(c.publish))
	m.HandleFunc("POST "+Prefix+"policy/check", c.post(c.check))
	m.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		render(w, http.StatusNotFound, "error", page{Title: "Not found", Data: "There is no such page."})
	})
}

// home sends a signed-in admin to the devices, anyone else to sign in.
func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	if c.sessions.get(r) == nil {
		render(w, http.StatusOK, "signin", page{Title: "Sign in"})
		return
	}
	http.Redirect(w, r, Prefix+"devices", http.StatusSeeOther)
}

// get serves a page to a signed-in admin; anyone else gets the sign-in
// page.
func (c *Console) get(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := c.sessions.get(r)
		if s == nil {
			render(w, http.StatusUnauthorized, "signin", page{Title: "Sign in"})
			return
		}
		h(w, r, s)
	}
}

// post runs an action only for a request from the console's own origin
// (Sec-Fetch-Site, else Origin against Host) with a live session and
// that session's CSRF token in the form. Anything else is refused with
// 403 before the action runs.
func (c *Console) post(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := c.xorigin.Check(r); err != nil {
			c.refuse(w, r, "cross-origin request", err)
			return
		}
		if o := r.Header.Get("Origin"); o != "" && o != "https://"+r.Host {
			c.refuse(w, r, "foreign origin", errors.New(o))
			return
		}
		s := c.sessions.get(r)
		if s == nil {
			c.refuse(w, r, "no session", nil)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			c.refuse(w, r, "unreadable form", err)
			return
		}
		if !s.validCSRF(r.PostForm.Get("csrf")) {
			c.refuse(w, r, "missing or wrong CSRF token", nil)
			return
		}
		h(w, r, s)
	}
}

func (c *Console) refuse(w http.ResponseWriter, r *http.Request, why string, err error) {
	args := []any{"why", why, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr}
	if err != nil {
		args = append(args, "err", err)
	}
	c.o.Logger.Warn("console request refused", args...)
	render(w, http.StatusForbidden, "error", page{Title: "Refused", Data: "Refused: " + why + ". Nothing was changed."})
}

// login starts a sign-in at the provider.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	l, sealed := c.logins.start()
	u, err := c.rp.authURL(r.Context(), l)
	if err != nil {
		c.o.Logger.Error("console sign-in", "err", err)
		render(w, http.StatusBadGateway, "error", page{Title: "Sign-in unavailable", Data: err.Error()})
		return
	}
	// Lax, not Strict: the provider's redirect back is a cross-site
	// navigation, on which a Strict cookie would not be sent.
	setCookie(w, loginCookie, sealed, int(loginTTL.Seconds()), http.SameSiteLaxMode)
	http.Redirect(w, r, u, http.StatusFound)
}

// callback finishes a sign-in: the state must be the one this browser
// started, the ID token valid and its user in an admin group.
func (c *Console) callback(w http.ResponseWriter, r *http.Request) {
	setCookie(w, loginCookie, "", -1, http.SameSiteLaxMode)
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		c.o.Logger.Warn("console sign-in refused by the provider", "error", e, "description", q.Get("error_description"))
		render(w, http.StatusUnauthorized, "error", page{Title: "Sign-in failed", Data: "The identity provider said: " + e})
		return
	}
	var cookie string
	if ck, err := r.Cookie(loginCookie); err == nil {
		cookie = ck.Value
	}
	l, ok := c.logins.finish(q.Get("state"), cookie)
	if !ok {
		c.o.Logger.Warn("console sign-in refused", "why", "unknown, expired or foreign state", "remote", r.RemoteAddr)
		render(w, http.StatusBadRequest, "error", page{Title: "Sign-in failed", Data: "This sign-in was not started in this browser, has expired or was used. Sign in again."})
		return
	}
	a, err := c.rp.exchange(r.Context(), l, q.Get("code"))
	if errors.Is(err, errNotAdmin) {
		c.o.Logger.Warn("console sign-in refused", "why", "not an admin", "email", a.Email, "subject", a.Subject, "groups", a.Groups)
		render(w, http.StatusForbidden, "error", page{Title: "Not an admin",
			Data: a.Email + " is in none of the console's admin groups (oidc.admin_groups: " + strings.Join(c.o.OIDC.AdminGroups, ", ") + ")."})
		return
	}
	if err != nil {
		c.o.Logger.Warn("console sign-in refused", "err", err)
		render(w, http.StatusUnauthorized, "error", page{Title: "Sign-in failed", Data: err.Error()})
		return
	}
	id, _, ok := c.sessions.create(a)
	if !ok {
		render(w, http.StatusServiceUnavailable, "error", page{Title: "Busy", Data: "Too many sessions; try again later."})
		return
	}
	c.o.Logger.Info("console sign-in", "email", a.Email, "subject", a.Subject)
	setCookie(w, sessionCookie, id, int(c.o.SessionTTL.Seconds()), http.SameSiteStrictMode)
	// A page, not a redirect: the redirect chain began at the provider, a
	// cross-site navigation, so the browser would not send the new Strict
	// cookie on it. This page's own navigation is same-site.
	render(w, http.StatusOK, "signedin", page{Title: "Signed in", Data: a.Email})
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	c.sessions.end(r)
	c.actionLog(r.Context(), s, "sign-out", "", nil)
	setCookie(w, sessionCookie, "", -1, http.SameSiteStrictMode)
	render(w, http.StatusOK, "signin", page{Title: "Signed out"})
}
