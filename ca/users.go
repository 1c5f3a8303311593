package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/translog"
)

// authenticateDevice checks the machine certificate a device presented
// over mTLS: it verifies, the device is active, and it is the device's
// current certificate.
func (c *CA) authenticateDevice(ctx context.Context, peer []*x509.Certificate) (certs.Identity, error) {
	if len(peer) == 0 {
		return certs.Identity{}, refuse(CodeForbidden, "this request needs the device's machine certificate (mTLS)")
	}
	id, err := certs.Verify(certs.Bundle{Machine: peer[0], Intermediates: peer[1:]}, c.roots, nil, c.now())
	if err != nil {
		return certs.Identity{}, refuseErr(CodeForbidden, err, "client certificate")
	}
	err = c.store.View(ctx, func(tx store.Tx) error {
		_, err := currentDeviceLocked(tx, id)
		return err
	})
	return id, err
}

// currentDeviceLocked returns the device of a verified machine identity if
// it is enrolled, active, and the certificate is its current one.
func currentDeviceLocked(tx store.Tx, id certs.Identity) (store.Device, error) {
	dev, err := tx.GetDevice(id.DeviceID)
	if errors.Is(err, store.ErrNotFound) {
		return dev, refuse(CodeForbidden, "device %s is not enrolled", id.DeviceID)
	} else if err != nil {
		return dev, err
	}
	if dev.State != store.DeviceActive {
		return dev, refuse(CodeForbidden, "device %s is %s", dev.ID, dev.State)
	}
	if dev.Serial != id.Serial {
		return dev, refuse(CodeForbidden, "certificate %s was superseded by %s", id.Serial, dev.Serial)
	}
	return dev, nil
}

// userIDOf is the stable ID of a verified user.
func userIDOf(u verifiedUser) certs.UserID { return certs.DeriveUserID(u.Issuer, u.Subject) }

// recordLogin records a verified login: the ID token is spent, the user
// is created or updated, and a new user's login waits for approval when
// the server requires it (CodeLoginPending).
func (c *CA) recordLogin(ctx context.Context, s *loginSession, u verifiedUser) error {
	if err := checkSubject(u.Subject); err != nil {
		return err
	}
	email, err := certs.ParseEmail(u.Email)
	if err != nil {
		return refuse(CodeBadIDToken, "email claim: %v", err)
	}
	groups, err := certs.ParseGroups(u.Groups)
	if err != nil {
		return refuse(CodeBadIDToken, "groups claim %q: %v", c.rp.cfg.GroupsClaim, err)
	}
	now := c.now()
	pending := false
	err = c.updateExclusive(ctx, func(tx store.Tx) error {
		if err := tx.MarkIDTokenUsed(u.TokenHash, now.Add(24*time.Hour), now); errors.Is(err, store.ErrExists) {
			return refuse(CodeBadIDToken, "this ID token was already used for a login (replay)")
		} else if err != nil {
			return err
		}
		id := userIDOf(u)
		rec, err := tx.GetUser(id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			rec = store.User{ID: id, Issuer: u.Issuer, Subject: u.Subject, State: store.UserApproved, FirstSeen: now}
			if c.rp.cfg.RequireApproval {
				rec.State = store.UserPending
			}
		case err != nil:
			return err
		}
		if rec.State == store.UserRevoked {
			return refuse(CodeLoginRefused, "%s is revoked: an administrator must remove the revocation (certmesh-server users remove) before a new login", email)
		}
		rec.Email, rec.Groups = email, groups
		if err := tx.PutUser(rec); err != nil {
			return fmt.Errorf("recording user: %w", err)
		}
		pending = rec.State == store.UserPending
		return nil
	})
	if err == nil && pending {
		return refuse(CodeLoginPending, "%s is a new user: an administrator must approve the first login (certmesh-server users approve %s)", email, email)
	}
	return err
}

// userLifetime is the validity of a user certificate issued now: the
// configured lifetime, cut to the provider's session when it ends sooner.
func (c *CA) userLifetime(u verifiedUser, now time.Time) (time.Time, error) {
	notAfter := now.Add(time.Duration(c.rp.cfg.UserCertLifetime))
	if !u.SessionEnds.IsZero() && u.SessionEnds.Before(notAfter) {
		notAfter = u.SessionEnds
	}
	if !notAfter.After(now.Add(30 * time.Second)) {
		return time.Time{}, refuse(CodeLoginRefused, "the identity provider's session ends at %s: log in again at the provider", notAfter.UTC().Format(time.RFC3339))
	}
	return notAfter, nil
}

// issueUser signs the user certificate of a completed login, bound to the
// device key of the session's machine certificate, and records it.
func (c *CA) issueUser(ctx context.Context, s *loginSession, u verifiedUser) (*wire.LoginPollResponse, error) {
	email, err := certs.ParseEmail(u.Email)
	if err != nil {
		return nil, refuse(CodeBadIDToken, "email claim: %v", err)
	}
	groups, err := certs.ParseGroups(u.Groups)
	if err != nil {
		return nil, refuse(CodeBadIDToken, "groups claim: %v", err)
	}
	now := c.now()
	notAfter, err := c.userLifetime(u, now)
	if err != nil {
		return nil, err
	}
	p, err := certs.UserProfile{
		TrustDomain: c.cfg.TrustDomain, UserID: userIDOf(u), Email: email, Groups: groups,
		NotBefore: certStart(c.cfg.CertBackdate, now, notAfter.Sub(now)), NotAfter: notAfter,
	}.BindToMachine(s.machine)
	if err != nil {
		return nil, refuse(CodeForbidden, "%v", err)
	}
	if err := p.CheckRequest(s.csr); err != nil {
		return nil, refuse(CodeBadCSR, "%v", err)
	}
	var cert *x509.Certificate
	err = c.commitLogged(ctx, "login", func(tx store.Tx) error {
		// The device may have been revoked while the user was logging in.
		dev, err := tx.GetDevice(p.DeviceID)
		if err != nil {
			return fmt.Errorf("device %s: %w", p.DeviceID, err)
		}
		if dev.State != store.DeviceActive {
			return refuse(CodeForbidden, "device %s is %s", dev.ID, dev.State)
		}
		rec, err := tx.GetUser(p.UserID)
		if err != nil {
			return fmt.Errorf("user %s: %w", p.UserID, err)
		}
		if rec.State != store.UserApproved {
			return refuse(CodeLoginPending, "%s is not approved", rec.Email)
		}
		if err := atStep(stepSign); err != nil {
			return err
		}
		if cert, err = c.signer.signUser(ctx, s.csr, p); err != nil {
			return err
		}
		serial := cert.SerialNumber.Text(16)
		if err := tx.PutCertificate(store.CertRecord{Serial: serial, DeviceID: p.DeviceID, UserID: p.UserID,
			DER: cert.Raw, IssuedAt: now, NotAfter: cert.NotAfter}); err != nil {
			return fmt.Errorf("recording certificate: %w", err)
		}
		if err := logInTx(tx, translog.CertificateEntry(cert.Raw, c.inter.Cert.Raw)); err != nil {
			return err
		}
		if rec.Devices == nil {
			rec.Devices = map[certs.DeviceID]string{}
		}
		rec.Devices[p.DeviceID], rec.LastLogin = serial, now
		return tx.PutUser(rec)
	})
	if err != nil {
		return nil, err
	}
	c.publishCheckpoint()
	return &wire.LoginPollResponse{Status: wire.LoginDone, UserCert: cert.Raw, Email: string(email), Groups: groupStrings(groups), NotAfter: cert.NotAfter,
		UserInclusion: c.inclusion(cert)}, nil
}

// Users lists the users who logged in.
func (c *CA) Users(ctx context.Context) ([]store.User, error) {
	return list(ctx, c, store.Tx.ListUsers)
}

// findUser resolves an admin's reference to a user: an ID or an email.
func findUser(tx store.Tx, ref string) (store.User, error) {
	if id, err := certs.ParseUserID(ref); err == nil {
		if u, err := tx.GetUser(id); err == nil {
			return u, nil
		}
	}
	email, err := certs.ParseEmail(ref)
	if err != nil {
		return store.User{}, refuse(CodeNotFound, "no user %q (give a user ID or an email)", ref)
	}
	users, err := tx.ListUsers()
	if err != nil {
		return store.User{}, err
	}
	var found []store.User
	for _, u := range users {
		if u.Email == email {
			found = append(found, u)
		}
	}
	switch len(found) {
	case 0:
		return store.User{}, refuse(CodeNotFound, "no user %s", email)
	case 1:
		return found[0], nil
	default:
		return store.User{}, refuse(CodeBadRequest, "%d users have the email %s: give the user ID", len(found), email)
	}
}

// ApproveUser approves a pending user; logins waiting for it complete.
func (c *CA) ApproveUser(ctx context.Context, ref string) (store.User, error) {
	var u store.User
	err := c.updateExclusive(ctx, func(tx store.Tx) (err error) {
		if u, err = findUser(tx, ref); err != nil {
			return err
		}
		if u.State == store.UserApproved {
			return refuse(CodeBadRequest, "%s is already approved", u.Email)
		}
		u.State, u.ApprovedAt = store.UserApproved, c.now()
		return tx.PutUser(u)
	})
	if err != nil {
		return store.User{}, err
	}
	c.log.Info("user approved", "user", u.ID, "email", u.Email)
	for _, s := range c.logins.waitingFor(u.ID) {
		c.logins.mu.Lock()
		vu := *s.user
		c.logins.mu.Unlock()
		c.issueForLogin(ctx, s, vu)
	}
	return u, nil
}

// RemoveUser deletes a user record: their next login is a first login
// again (and waits for approval if the server requires it).
func (c *CA) RemoveUser(ctx context.Context, ref string) (store.User, error) {
	var u store.User
	err := c.updateExclusive(ctx, func(tx store.Tx) (err error) {
		if u, err = findUser(tx, ref); err != nil {
			return err
		}
		return tx.DeleteUser(u.ID)
	})
	if err == nil {
		c.log.Info("user removed", "user", u.ID, "email", u.Email)
	}
	return u, err
}

// RevokeUser revokes every current certificate of a user and blocks the
// user's logins (and so renewal: a user certificate is renewed by logging
// in again).
func (c *CA) RevokeUser(ctx context.Context, ref string) (store.User, error) {
	var u store.User
	var n int
	err := c.commitLogged(ctx, "revoke-user", func(tx store.Tx) (err error) {
		if u, err = findUser(tx, ref); err != nil {
			return err
		}
		if u.State == store.UserRevoked {
			return refuse(CodeBadRequest, "%s is already revoked", u.Email)
		}
		u.State = store.UserRevoked
		if err := tx.PutUser(u); err != nil {
			return err
		}
		n, err = c.revokeUserCertsLocked(tx, u.ID, certs.RevokePrivilegeWithdrawn)
		return err
	})
	if err != nil {
		return store.User{}, err
	}
	c.log.Info("user revoked", "user", u.ID, "email", u.Email, "certificates", n)
	if err := c.RefreshCRL(ctx); err != nil {
		c.log.Error("publishing CRL after revocation", "user", u.ID, "err", err)
	}
	return u, nil
}
