package agent

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/atomicfile"
	"github.com/certmesh/certmesh/internal/backoff"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/translog"
)

// userCertFile keeps the user certificate between runs (not secret: its
// key is the device key).
const userCertFile = "user.crt"

// LoginState is where the agent's latest login stands, for `certmesh login`.
type LoginState struct {
	LoginID string           `json:"login_id,omitempty"`
	Status  wire.LoginStatus `json:"status,omitempty"` // "" when no login was started
	Message string           `json:"message,omitempty"`
	Code    string           `json:"code,omitempty"`
	// Where to log in (one of the two forms).
	AuthURL                 string    `json:"auth_url,omitempty"`
	VerificationURI         string    `json:"verification_uri,omitempty"`
	VerificationURIComplete string    `json:"verification_uri_complete,omitempty"`
	UserCode                string    `json:"user_code,omitempty"`
	Expires                 time.Time `json:"expires,omitzero"`
	// The result.
	User *UserStatus `json:"user,omitempty"`
}

// UserStatus is a verified user identity, ours or a peer's.
type UserStatus struct {
	UserID   certs.UserID  `json:"user_id"`
	Email    certs.Email   `json:"email"`
	Groups   []certs.Group `json:"groups,omitempty"`
	NotAfter time.Time     `json:"not_after"`
}

func userStatus(u *certs.UserIdentity) *UserStatus {
	if u == nil {
		return nil
	}
	return &UserStatus{UserID: u.UserID, Email: u.Email, Groups: u.Groups, NotAfter: u.NotAfter}
}

// Login asks the CA to start a user login for this device and follows it
// in the background until it ends; LoginStatus reports how it goes.
func (a *Agent) Login(ctx context.Context, deviceFlow bool) (LoginState, error) {
	_, b := a.ident.get()
	tmpl := &x509.CertificateRequest{Subject: b.Machine.Subject}
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, a.keys.device)
	if err != nil {
		return LoginState{}, fmt.Errorf("signing login request: %w", err)
	}
	var resp wire.LoginStartResponse
	if err := a.caAPI.call(ctx, http.MethodPost, wire.PathLoginStart, wire.LoginStartRequest{CSR: csr, DeviceFlow: deviceFlow}, &resp); err != nil {
		return LoginState{}, fmt.Errorf("starting login: %w", err)
	}
	st := LoginState{
		LoginID: resp.LoginID, Status: wire.LoginPending, AuthURL: resp.AuthURL, Expires: resp.Expires,
		VerificationURI: resp.VerificationURI, VerificationURIComplete: resp.VerificationURIComplete, UserCode: resp.UserCode,
	}
	a.mu.Lock()
	a.login = st
	a.loginChangedLocked()
	runCtx := a.runCtx
	a.mu.Unlock()
	if runCtx == nil {
		runCtx = context.Background()
	}
	go a.followLogin(runCtx, resp.LoginID, resp.Expires)
	a.cfg.Logger.Info("login started", "login", resp.LoginID, "device_flow", deviceFlow)
	return st, nil
}

// LoginStatus reports the latest login.
func (a *Agent) LoginStatus() LoginState {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.login
}

func (a *Agent) setLogin(id string, edit func(*LoginState)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.login.LoginID == id { // a newer login replaced it
		edit(&a.login)
		a.loginChangedLocked()
	}
}

// followLogin polls the CA until the login ends.
func (a *Agent) followLogin(ctx context.Context, id string, expires time.Time) {
	ctx, cancel := context.WithDeadline(ctx, expires.Add(time.Minute))
	defer cancel()
	known := wire.LoginPending
	bo := backoff.Backoff{Min: 2 * time.Second, Max: 30 * time.Second}
	for {
		var resp wire.LoginPollResponse
		err := a.caAPI.call(ctx, http.MethodPost, wire.PathLoginPoll, wire.LoginPollRequest{LoginID: id, Known: known}, &resp)
		if err != nil {
			var se *ServerError
			if errors.As(err, &se) || ctx.Err() != nil {
				a.setLogin(id, func(s *LoginState) { s.Status, s.Message = wire.LoginFailed, err.Error() })
				return
			}
			a.cfg.Logger.Warn("polling login", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(bo.Next()):
			}
			continue
		}
		bo.Reset()
		switch resp.Status {
		case wire.LoginDone:
			u, err := a.adoptUserCert(ctx, resp.UserCert, resp.UserInclusion)
			a.setLogin(id, func(s *LoginState) {
				if err != nil {
					s.Status, s.Message = wire.LoginFailed, err.Error()
					return
				}
				s.Status, s.Message, s.User = wire.LoginDone, "", userStatus(u)
			})
			return
		case wire.LoginFailed:
			a.setLogin(id, func(s *LoginState) { s.Status, s.Message, s.Code = resp.Status, resp.Message, resp.Code })
			a.cfg.Logger.Warn("login refused", "code", resp.Code, "err", resp.Message)
			return
		default:
			known = resp.Status
			a.setLogin(id, func(s *LoginState) { s.Status, s.Message, s.Code = resp.Status, resp.Message, resp.Code })
		}
	}
}

// adoptUserCert verifies a user certificate from the CA the way peers will
// (with our machine certificate, against the pinned root), keeps it and
// publishes it.
func (a *Agent) adoptUserCert(ctx context.Context, der []byte, incl *translog.InclusionBundle) (*certs.UserIdentity, error) {
	u, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("user certificate from the CA: %w", err)
	}
	id, err := a.verifyUser(u)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(a.cfg.StateDir, userCertFile), certs.EncodePEM(u), 0o644); err != nil {
		return nil, fmt.Errorf("saving user certificate: %w", err)
	}
	if err := saveUserInclusion(a.cfg.StateDir, incl); err != nil && incl != nil {
		return nil, fmt.Errorf("saving the user certificate's inclusion proof: %w", err)
	}
	a.pub.setUserInclusion(incl)
	a.ident.setUser(u)
	a.cfg.Logger.Info("user logged in", "email", id.Email, "groups", id.Groups, "not_after", id.NotAfter)
	a.republish(ctx, "publishing user certificate")
	return id, nil
}

// verifyUser checks u with our current machine certificate.
func (a *Agent) verifyUser(u *x509.Certificate) (*certs.UserIdentity, error) {
	_, b := a.ident.get()
	b.User = u
	id, err := certs.VerifyWith(b, a.roots, nil, a.verifyOptions())
	if err != nil {
		return nil, fmt.Errorf("verifying own machine certificate: %w", err)
	}
	if id.User == nil {
		if id.UserRejected != nil {
			return nil, fmt.Errorf("user certificate refused: %w", id.UserRejected)
		}
		return nil, errors.New("user certificate refused")
	}
	return id.User, nil
}

// loadUserCert restores a stored user certificate that still verifies.
func (a *Agent) loadUserCert() {
	path := filepath.Join(a.cfg.StateDir, userCertFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	cs, err := certs.ParsePEM(data)
	if err == nil && len(cs) == 1 {
		if _, err = a.verifyUser(cs[0]); err == nil {
			a.ident.setUser(cs[0])
			a.pub.setUserInclusion(loadUserInclusion(a.cfg.StateDir))
			return
		}
	}
	a.cfg.Logger.Info("dropping stored user certificate", "err", err)
	_ = os.Remove(path) // if it stays, the next start verifies and drops it again
}

// Logout drops the user certificate; peers see the machine alone.
func (a *Agent) Logout(ctx context.Context) error {
	if err := os.Remove(filepath.Join(a.cfg.StateDir, userCertFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing user certificate: %w", err)
	}
	had := a.ident.setUser(nil) != nil
	a.mu.Lock()
	a.login = LoginState{}
	a.loginChangedLocked()
	a.mu.Unlock()
	if had {
		a.cfg.Logger.Info("user logged out")
		a.republish(ctx, "publishing logout")
	}
	return nil
}

// expireUser drops our user certificate once it has expired.
func (a *Agent) expireUser(ctx context.Context) {
	u := a.ident.user()
	if u == nil || !a.cfg.Now().After(u.NotAfter) {
		return
	}
	a.cfg.Logger.Info("user certificate expired: log in again with `certmesh login`", "not_after", u.NotAfter)
	_ = os.Remove(filepath.Join(a.cfg.StateDir, userCertFile)) // if it stays, the next start finds it expired and drops it
	a.ident.setUser(nil)
	a.republish(ctx, "publishing user expiry")
}

func (a *Agent) republish(ctx context.Context, what string) {
	if a.coord == nil {
		return
	}
	if err := a.coord.republish(ctx); err != nil {
		a.cfg.Logger.Warn(what, "err", err)
	}
}
