package oidctest

import (
	"context"
	"errors"
	"fmt"
	"html"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// The provider's own pages: a username/password form for the authorization
// code flow and a verification form for the device flow. They are minimal
// but real HTML forms; Login and DeviceLogin drive them like a browser would.

var loginTmpl = template.Must(template.New("login").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Sign in - oidctest</title></head>
<body>
<h1>Sign in</h1>
{{if .Error}}<p class="error">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="authRequestID" value="{{.ID}}">
<label>Username <input type="text" name="username" value="{{.Username}}" autofocus></label>
<label>Password <input type="password" name="password"></label>
<button type="submit">Sign in</button>
</form>
</body></html>
`))

var deviceTmpl = template.Must(template.New("device").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Connect a device - oidctest</title></head>
<body>
<h1>Connect a device</h1>
{{if .Error}}<p class="error">{{.Error}}</p>{{end}}
{{if .Done}}<p class="done">{{.Done}}</p>{{else}}
<form method="post" action="{{.Action}}">
<label>Code <input type="text" name="user_code" value="{{.UserCode}}"></label>
<label>Username <input type="text" name="username" value="{{.Username}}"></label>
<label>Password <input type="password" name="password"></label>
<button type="submit" name="action" value="approve">Allow</button>
<button type="submit" name="action" value="deny">Deny</button>
</form>{{end}}
</body></html>
`))

type pageData struct {
	Action, ID, Username, UserCode, Error, Done string
}

func render(w http.ResponseWriter, t *template.Template, status int, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = t.Execute(w, d)
}

func (p *Provider) loginPage(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	id := r.Form.Get("authRequestID")
	d := pageData{Action: loginPath, ID: id}
	if !p.store.authRequestKnown(id) {
		d.Error = "unknown or expired sign-in request"
		render(w, loginTmpl, http.StatusBadRequest, d)
		return
	}
	p.signIn(w, r, loginTmpl, d, func(d *pageData, u *User) {
		if err := p.store.completeLogin(id, u.Subject); err != nil {
			d.Error = err.Error()
			render(w, loginTmpl, http.StatusUnauthorized, *d)
			return
		}
		ctx := op.ContextWithIssuer(r.Context(), p.issuer)
		http.Redirect(w, r, op.AuthCallbackURL(p.op)(ctx, id), http.StatusFound)
	})
}

// signIn serves a sign-in form of tmpl: GET shows it with d; POST checks
// the username and password and, if they are right, hands the user to
// signedIn, which answers.
func (p *Provider) signIn(w http.ResponseWriter, r *http.Request, tmpl *template.Template, d pageData, signedIn func(*pageData, *User)) {
	switch r.Method {
	case http.MethodGet:
		render(w, tmpl, http.StatusOK, d)
	case http.MethodPost:
		d.Username = r.PostForm.Get("username")
		u, err := p.store.checkPassword(d.Username, r.PostForm.Get("password"))
		if err != nil {
			d.Error = err.Error()
			render(w, tmpl, http.StatusUnauthorized, d)
			return
		}
		signedIn(&d, u)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func normalizeUserCode(c string) string { return strings.ToUpper(strings.TrimSpace(c)) }

func (p *Provider) devicePage(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	d := pageData{Action: devicePath, UserCode: normalizeUserCode(r.Form.Get("user_code"))}
	p.signIn(w, r, deviceTmpl, d, func(d *pageData, u *User) {
		approve := r.PostForm.Get("action") != "deny"
		if err := p.store.decideDevice(d.UserCode, u.Subject, approve); err != nil {
			d.Error = err.Error()
			render(w, deviceTmpl, http.StatusBadRequest, *d)
			return
		}
		d.Done = "Device denied."
		if approve {
			d.Done = "Device connected. You can close this page."
		}
		render(w, deviceTmpl, http.StatusOK, *d)
	})
}

// ---- browser-less drivers ----

// browser returns a client that trusts the provider and follows redirects
// only while they stay on the provider, so the redirect back to the relying
// party comes back as the final response instead of being followed.
func (p *Provider) browser() *http.Client {
	host := p.addr
	return &http.Client{
		Transport: p.transport,
		Timeout:   p.client.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Host != host {
				return http.ErrUseLastResponse
			}
			if len(via) >= 10 {
				return errors.New("oidctest: too many redirects")
			}
			return nil
		},
	}
}

var (
	formRE    = regexp.MustCompile(`<form method="post" action="([^"]*)">`)
	hiddenRE  = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
	pageErrRE = regexp.MustCompile(`<p class="error">([^<]*)</p>`)
)

// Login signs username in at the provider for the authorization URL authURL
// that a relying party produced, like a person in a browser: it follows
// authURL, fills in and submits the login form, and returns the URL the
// provider then redirects to, normally the relying party's redirect_uri with
// code and state, without requesting it, so that the test can deliver it to
// the relying party's callback.
//
// A provider that refuses the authorization request (unregistered client or
// redirect URI) makes Login fail; one that refuses it by redirecting back
// (for example PKCE missing: error=invalid_request) returns that redirect
// with its error parameter and no error. Wrong credentials fail with the
// page's message.
func (p *Provider) Login(ctx context.Context, authURL, username, password string) (*url.URL, error) {
	u, err := url.Parse(authURL)
	if err != nil {
		return nil, fmt.Errorf("oidctest: login: %w", err)
	}
	if u.Scheme != "https" || u.Host != p.addr {
		return nil, fmt.Errorf("oidctest: login: %s is not this provider's (%s)", authURL, p.issuer)
	}
	c := p.browser()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return nil, fmt.Errorf("oidctest: login: %w", err)
	}
	submitted := false
	for {
		resp, err := c.Do(req)
		if err != nil {
			return nil, fmt.Errorf("oidctest: login: %w", err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()

		if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400 {
			next, err := resp.Request.URL.Parse(loc)
			if err != nil {
				return nil, fmt.Errorf("oidctest: login: bad redirect %q: %w", loc, err)
			}
			return next, nil // left the provider: the relying party's callback
		}
		if submitted || resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("oidctest: login: %s", describe(resp, body))
		}
		form := formRE.FindSubmatch(body)
		if form == nil {
			return nil, fmt.Errorf("oidctest: login: no login form at %s", resp.Request.URL)
		}
		action, err := resp.Request.URL.Parse(html.UnescapeString(string(form[1])))
		if err != nil {
			return nil, fmt.Errorf("oidctest: login: %w", err)
		}
		v := url.Values{}
		for _, m := range hiddenRE.FindAllSubmatch(body, -1) {
			v.Set(html.UnescapeString(string(m[1])), html.UnescapeString(string(m[2])))
		}
		v.Set("username", username)
		v.Set("password", password)
		if req, err = postForm(ctx, action.String(), v); err != nil {
			return nil, fmt.Errorf("oidctest: login: %w", err)
		}
		submitted = true
	}
}

// DeviceLogin signs username in on the device verification page and allows
// (approve) or denies the device whose user code is userCode.
func (p *Provider) DeviceLogin(ctx context.Context, userCode, username, password string, approve bool) error {
	v := url.Values{
		"user_code": {userCode},
		"username":  {username},
		"password":  {password},
		"action":    {"approve"},
	}
	if !approve {
		v.Set("action", "deny")
	}
	req, err := postForm(ctx, p.issuer+devicePath, v)
	if err != nil {
		return fmt.Errorf("oidctest: device: %w", err)
	}
	resp, err := p.browser().Do(req)
	if err != nil {
		return fmt.Errorf("oidctest: device: %w", err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("oidctest: device: %s", describe(resp, body))
	}
	return nil
}

// ApproveDevice signs username in (with the password it was added with) and
// allows the device whose user code is userCode, as the person reading the
// code off the device's screen would.
func (p *Provider) ApproveDevice(ctx context.Context, userCode, username string) error {
	return p.decideAs(ctx, userCode, username, true)
}

// DenyDevice is ApproveDevice that presses "Deny": the device's poll then
// ends with access_denied.
func (p *Provider) DenyDevice(ctx context.Context, userCode, username string) error {
	return p.decideAs(ctx, userCode, username, false)
}

func (p *Provider) decideAs(ctx context.Context, userCode, username string, approve bool) error {
	u, ok := p.store.userByLogin(username)
	if !ok {
		return fmt.Errorf("oidctest: device: no user %q", username)
	}
	return p.DeviceLogin(ctx, userCode, username, u.Password, approve)
}

func postForm(ctx context.Context, target string, v url.Values) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(v.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req, nil
}

func describe(resp *http.Response, body []byte) string {
	if m := pageErrRE.FindSubmatch(body); m != nil {
		return fmt.Sprintf("%s: %s", resp.Status, html.UnescapeString(string(m[1])))
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return fmt.Sprintf("%s: %s", resp.Status, s)
}
