package ca

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
)

// Login limits.
const (
	// LoginTTL is how long a user has to complete a login.
	LoginTTL = 10 * time.Minute
	// maxLogins bounds the logins in progress (they live in memory).
	maxLogins = 4096
	// pollWait is how long a poll waits for the login to finish.
	pollWait = 20 * time.Second
)

// loginSession is one user login in progress, bound to the device that
// asked for it: the state, nonce and PKCE verifier are fresh for it, the
// CSR is signed by that device's key, and only that device can poll it.
type loginSession struct {
	id         string
	state      string // OAuth state, sent through the browser
	nonce      string // OIDC nonce, bound to this login and this device
	verifier   string // PKCE code verifier
	device     certs.DeviceID
	machine    *x509.Certificate
	csr        *x509.CertificateRequest
	expires    time.Time
	device8628 *oauth2.DeviceAuthResponse

	// The outcome, guarded by logins.mu.
	status  wire.LoginStatus
	fail    *Error
	user    *verifiedUser
	result  *wire.LoginPollResponse
	changed chan struct{} // closed and replaced on every status change
}

// logins holds the logins in progress.
type logins struct {
	mu      sync.Mutex
	byID    map[string]*loginSession
	byState map[string]*loginSession
}

func newLogins() *logins {
	return &logins{byID: map[string]*loginSession{}, byState: map[string]*loginSession{}}
}

func randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating login secrets: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// add registers a new session, after purging the expired ones.
func (l *logins) add(now time.Time, s *loginSession) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, o := range l.byID {
		if now.After(o.expires.Add(time.Minute)) {
			delete(l.byID, id)
			delete(l.byState, o.state)
		}
	}
	if len(l.byID) >= maxLogins {
		return refuse(CodeExhausted, "too many logins in progress; try again in a few minutes")
	}
	l.byID[s.id] = s
	l.byState[s.state] = s
	return nil
}

// byStateValue finds the session of an OAuth state (constant-time on the
// secret part: the map lookup is keyed on it, so compare again).
func (l *logins) take(state string) (*loginSession, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.byState[state]
	if !ok || subtle.ConstantTimeCompare([]byte(s.state), []byte(state)) != 1 {
		return nil, false
	}
	// The state is single-use: a replayed callback finds nothing.
	delete(l.byState, state)
	return s, true
}

func (l *logins) get(id string) (*loginSession, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.byID[id]
	return s, ok
}

// set records a new status for s.
func (l *logins) set(s *loginSession, st wire.LoginStatus, fail *Error, res *wire.LoginPollResponse) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.status == wire.LoginDone || s.status == wire.LoginFailed {
		return // final
	}
	s.status, s.fail, s.result = st, fail, res
	close(s.changed)
	s.changed = make(chan struct{})
}

// pending lists the sessions waiting for approval of userID.
func (l *logins) waitingFor(userID certs.UserID) []*loginSession {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*loginSession
	for _, s := range l.byID {
		if s.status == wire.LoginAwaitingApproval && s.user != nil && userIDOf(*s.user) == userID {
			out = append(out, s)
		}
	}
	return out
}

// view reads the status under the lock.
func (l *logins) view(s *loginSession) (wire.LoginStatus, *Error, *wire.LoginPollResponse, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return s.status, s.fail, s.result, s.changed
}

// StartLogin begins a user login for the device that presented its machine
// certificate over mTLS. The request's CSR must be signed by that device's
// key: the user certificate will certify the same key.
func (c *CA) StartLogin(ctx context.Context, peer []*x509.Certificate, req wire.LoginStartRequest) (wire.LoginStartResponse, error) {
	if c.rp == nil {
		return wire.LoginStartResponse{}, refuse(CodeLoginDisabled, "this CA has no identity provider configured (oidc in config.json)")
	}
	id, err := c.authenticateDevice(ctx, peer)
	if err != nil {
		return wire.LoginStartResponse{}, err
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return wire.LoginStartResponse{}, refuse(CodeBadCSR, "login CSR is not a DER certificate request: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return wire.LoginStartResponse{}, refuse(CodeBadCSR, "login CSR signature does not verify: %v", err)
	}
	if !slices.Equal(csr.RawSubjectPublicKeyInfo, peer[0].RawSubjectPublicKeyInfo) {
		return wire.LoginStartResponse{}, refuse(CodeBadCSR, "login CSR must be signed by the device key of the machine certificate")
	}
	s := &loginSession{device: id.DeviceID, machine: peer[0], csr: csr, expires: c.now().Add(LoginTTL),
		status: wire.LoginPending, changed: make(chan struct{})}
	for _, p := range []*string{&s.id, &s.state, &s.nonce, &s.verifier} {
		if *p, err = randomString(32); err != nil {
			return wire.LoginStartResponse{}, err
		}
	}
	resp := wire.LoginStartResponse{LoginID: s.id, Expires: s.expires}
	if req.DeviceFlow {
		da, err := c.rp.startDevice(ctx)
		if err != nil {
			return wire.LoginStartResponse{}, err
		}
		s.device8628 = da
		if !da.Expiry.IsZero() && da.Expiry.Before(s.expires) {
			s.expires, resp.Expires = da.Expiry, da.Expiry
		}
		resp.VerificationURI, resp.VerificationURIComplete, resp.UserCode = da.VerificationURI, da.VerificationURIComplete, da.UserCode
	} else if resp.AuthURL, err = c.rp.authURL(ctx, s); err != nil {
		return wire.LoginStartResponse{}, err
	}
	if err := c.logins.add(c.now(), s); err != nil {
		return wire.LoginStartResponse{}, err
	}
	if s.device8628 != nil {
		go c.runDeviceFlow(s)
	}
	c.log.Info("login started", "device", id.DeviceID, "login", s.id, "device_flow", req.DeviceFlow)
	return resp, nil
}

// runDeviceFlow polls the provider's token endpoint until the user
// approves the device code, denies it, or it expires.
func (c *CA) runDeviceFlow(s *loginSession) {
	ctx, cancel := context.WithDeadline(context.Background(), s.expires)
	defer cancel()
	u, err := c.rp.pollDevice(ctx, s.device8628)
	c.finishLogin(ctx, s, u, err)
}

// Callback completes an authorization code login: the provider redirected
// the user's browser here with the code and our state. It returns a
// message for the browser.
func (c *CA) Callback(ctx context.Context, state, code, idpError, idpErrorDesc string) (string, error) {
	if c.rp == nil {
		return "", refuse(CodeLoginDisabled, "this CA has no identity provider configured")
	}
	s, ok := c.logins.take(state)
	if !ok {
		return "", refuse(CodeBadRequest, "unknown or already used login state: start again with `certmesh login`")
	}
	if c.now().After(s.expires) {
		err := refuse(CodeLoginExpired, "this login expired at %s: start again with `certmesh login`", s.expires.UTC().Format(time.RFC3339))
		c.logins.set(s, wire.LoginFailed, err, nil)
		return "", err
	}
	if idpError != "" {
		err := refuse(CodeLoginRefused, "the identity provider refused the login: %s %s", idpError, idpErrorDesc)
		c.logins.set(s, wire.LoginFailed, err, nil)
		return "", err
	}
	if code == "" {
		err := refuse(CodeBadRequest, "callback without an authorization code")
		c.logins.set(s, wire.LoginFailed, err, nil)
		return "", err
	}
	u, err := c.rp.exchange(ctx, s, code)
	res := c.finishLogin(ctx, s, u, err)
	return res.msg, res.err
}

type loginOutcome struct {
	msg string
	err error
}

// finishLogin turns a verified user (or the error of verifying one) into
// the session's outcome: a user certificate, a wait for approval, or a
// refusal that says why.
func (c *CA) finishLogin(ctx context.Context, s *loginSession, u verifiedUser, err error) loginOutcome {
	if err == nil {
		u.Groups = groupStrings(c.userGroups(u))
		err = c.recordLogin(ctx, s, u)
	}
	if err != nil {
		e, ok := err.(*Error)
		if !ok {
			e = refuseErr(CodeInternal, err, "login")
		}
		if e.Reason == CodeLoginPending {
			c.logins.mu.Lock()
			s.user = &u
			c.logins.mu.Unlock()
			c.logins.set(s, wire.LoginAwaitingApproval, e, nil)
			c.log.Info("login waits for approval", "email", u.Email, "device", s.device)
			return loginOutcome{msg: fmt.Sprintf("Signed in as %s. An administrator must approve this first login; your device will get its certificate then.", u.Email)}
		}
		c.logins.set(s, wire.LoginFailed, e, nil)
		c.log.Warn("login refused", "device", s.device, "login", s.id, "code", e.Reason, "err", e)
		return loginOutcome{err: e}
	}
	return c.issueForLogin(ctx, s, u)
}

// issueForLogin signs the user certificate and completes the session.
func (c *CA) issueForLogin(ctx context.Context, s *loginSession, u verifiedUser) loginOutcome {
	res, err := c.issueUser(ctx, s, u)
	if err != nil {
		e, ok := err.(*Error)
		if !ok {
			e = refuseErr(CodeInternal, err, "issuing user certificate")
		}
		c.logins.set(s, wire.LoginFailed, e, nil)
		c.log.Error("issuing user certificate", "device", s.device, "email", u.Email, "err", err)
		return loginOutcome{err: e}
	}
	c.logins.set(s, wire.LoginDone, nil, res)
	c.log.Info("user logged in", "email", u.Email, "device", s.device, "groups", u.Groups, "not_after", res.NotAfter)
	return loginOutcome{msg: fmt.Sprintf("Signed in as %s on %s. You can close this window.", u.Email, s.machine.Subject.CommonName)}
}

// PollLogin waits (up to pollWait) for the login to finish and returns its
// status. Only the device that started the login may poll it.
func (c *CA) PollLogin(ctx context.Context, peer []*x509.Certificate, req wire.LoginPollRequest) (wire.LoginPollResponse, error) {
	id, err := c.authenticateDevice(ctx, peer)
	if err != nil {
		return wire.LoginPollResponse{}, err
	}
	s, ok := c.logins.get(req.LoginID)
	if !ok || s.device != id.DeviceID {
		return wire.LoginPollResponse{}, refuse(CodeNotFound, "no login %q for this device", req.LoginID)
	}
	timer := time.NewTimer(pollWait)
	defer timer.Stop()
	for {
		st, fail, res, changed := c.logins.view(s)
		switch {
		case st == wire.LoginDone:
			return *res, nil
		case st == wire.LoginFailed:
			return wire.LoginPollResponse{Status: st, Code: string(fail.Reason), Message: fail.Error()}, nil
		case c.now().After(s.expires):
			e := refuse(CodeLoginExpired, "the login was not completed before %s", s.expires.UTC().Format(time.RFC3339))
			c.logins.set(s, wire.LoginFailed, e, nil)
			continue
		}
		known := req.Known
		if known == "" {
			known = wire.LoginPending
		}
		if st != known {
			r := wire.LoginPollResponse{Status: st}
			if fail != nil {
				r.Code, r.Message = string(fail.Reason), fail.Error()
			}
			return r, nil
		}
		select {
		case <-changed:
		case <-timer.C:
			r := wire.LoginPollResponse{Status: st}
			if fail != nil {
				r.Code, r.Message = string(fail.Reason), fail.Error()
			}
			return r, nil
		case <-ctx.Done():
			return wire.LoginPollResponse{}, ctx.Err()
		}
	}
}
