package ca

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/wire"
)

// enrollment is a checked enrollment request, ready to be issued now or
// queued for approval.
type enrollment struct {
	host   certs.Hostname
	cr     *checkedRequest
	level  certs.AttestationLevel
	ekFP   string // TPM enrollments
	vendor string // TPM manufacturer
	remote string
	routes []netip.Prefix
	svcs   []certs.Service
}

// queue records an enrollment that waits for an admin. The token is spent
// now: the same token cannot queue a second request.
func (c *CA) queue(ctx context.Context, token string, tokenNeeded bool, e enrollment) (wire.CertificateResponse, error) {
	id, err := certs.NewDeviceID() // a fresh random name for the request
	if err != nil {
		return wire.CertificateResponse{}, err
	}
	secret, err := randomString(24)
	if err != nil {
		return wire.CertificateResponse{}, err
	}
	p := store.PendingEnrollment{
		ID: "p-" + string(id), PollHash: sha256.Sum256([]byte(secret)), State: store.PendingWaiting,
		Hostname: e.host, RemoteAddr: e.remote, RequestedAt: c.now(), Attestation: e.level,
		EKFP: e.ekFP, Manufacturer: e.vendor, CSR: e.cr.csr.Raw, WireGuardKey: e.cr.wgKey, DeviceKeyFP: e.cr.deviceFP,
		RequestedRoutes: e.routes, RequestedServices: e.svcs,
	}
	err = c.updateExclusive(ctx, func(tx store.Tx) error {
		if tokenNeeded {
			tok, err := c.redeemToken(tx, token, "")
			if err != nil {
				return err
			}
			p.TokenID, p.Tags = tok.ID, tok.Tags
		}
		if err := checkKeysUnused(tx, e.cr, ""); err != nil {
			return err
		}
		return tx.PutPending(p)
	})
	if err != nil {
		return wire.CertificateResponse{}, err
	}
	c.log.Info("enrollment waits for approval", "pending", p.ID, "hostname", p.Hostname, "remote", p.RemoteAddr, "token", p.TokenID)
	return wire.CertificateResponse{Pending: &wire.Pending{ID: p.ID, Secret: secret,
		Message: fmt.Sprintf("an administrator must approve this device: certmesh-server devices approve %s", p.ID)}}, nil
}

// PollEnrollment reports a pending enrollment: still waiting (Pending
// set), issued (the certificate), or denied (an error that says so).
func (c *CA) PollEnrollment(ctx context.Context, req wire.EnrollPollRequest) (wire.CertificateResponse, error) {
	var p store.PendingEnrollment
	var cert *x509.Certificate
	err := c.store.View(ctx, func(tx store.Tx) (err error) {
		if p, err = tx.GetPending(req.ID); err != nil {
			return refuse(CodeNotFound, "no pending enrollment %q", req.ID)
		}
		sum := sha256.Sum256([]byte(req.Secret))
		if subtle.ConstantTimeCompare(sum[:], p.PollHash[:]) != 1 {
			return refuse(CodeNotFound, "no pending enrollment %q", req.ID) // same answer: the secret is the capability
		}
		if p.State != store.PendingApproved {
			return nil
		}
		dev, err := tx.GetDevice(p.DeviceID)
		if err != nil {
			return err
		}
		rec, err := tx.GetCertificate(dev.Serial)
		if err != nil {
			return err
		}
		cert, err = x509.ParseCertificate(rec.DER)
		return err
	})
	if err != nil {
		return wire.CertificateResponse{}, err
	}
	switch p.State {
	case store.PendingDenied:
		msg := "an administrator denied this device"
		if p.Reason != "" {
			msg += ": " + p.Reason
		}
		return wire.CertificateResponse{}, refuse(CodeDenied, "%s", msg)
	case store.PendingWaiting:
		return wire.CertificateResponse{Pending: &wire.Pending{ID: p.ID, Secret: req.Secret,
			Message: fmt.Sprintf("waiting for approval since %s", p.RequestedAt.UTC().Format(time.RFC3339))}}, nil
	}
	return c.response(p.DeviceID, cert), nil
}

// Pending lists enrollments that wait for approval (and decided ones).
func (c *CA) Pending(ctx context.Context) ([]store.PendingEnrollment, error) {
	return list(ctx, c, store.Tx.ListPending)
}

func waitingLocked(tx store.Tx, id string) (store.PendingEnrollment, error) {
	p, err := tx.GetPending(id)
	if errors.Is(err, store.ErrNotFound) {
		return waitingByHostname(tx, id)
	} else if err != nil {
		return p, err
	}
	if p.State != store.PendingWaiting {
		return p, refuse(CodeBadRequest, "enrollment %s was already %s", id, p.State)
	}
	return p, nil
}

// Approve issues the certificate of a pending enrollment.
func (c *CA) Approve(ctx context.Context, id string) (store.Device, error) {
	var dev store.Device
	var replaced []certs.DeviceID
	err := c.commitLogged(ctx, "approve", func(tx store.Tx) error {
		p, err := waitingLocked(tx, id)
		if err != nil {
			return err
		}
		csr, err := x509.ParseCertificateRequest(p.CSR)
		if err != nil {
			return fmt.Errorf("stored request: %w", err)
		}
		cr := &checkedRequest{csr: csr, wgKey: p.WireGuardKey, deviceFP: p.DeviceKeyFP}
		if err := checkKeysUnused(tx, cr, ""); err != nil {
			return err
		}
		devID, err := certs.NewDeviceID()
		if err != nil {
			return err
		}
		if p.EKFP != "" {
			if replaced, err = c.replaceEKDevicesLocked(tx, certs.EKFingerprint(p.EKFP)); err != nil {
				return err
			}
		}
		if dev, err = c.createDevice(ctx, tx, devID, enrollment{host: p.Hostname, cr: cr, level: p.Attestation, ekFP: p.EKFP, routes: p.RequestedRoutes, svcs: p.RequestedServices}, p.Tags, p.TokenID); err != nil {
			return err
		}
		p.State, p.DecidedAt, p.DeviceID = store.PendingApproved, c.now(), dev.ID
		return tx.PutPending(p)
	})
	if err != nil {
		return store.Device{}, err
	}
	c.afterReplace(ctx, replaced)
	c.log.Info("enrollment approved", "pending", id, "device", dev.ID, "hostname", dev.Hostname)
	return dev, nil
}

// Deny refuses a pending enrollment; the agent is told why.
func (c *CA) Deny(ctx context.Context, id, reason string) (store.PendingEnrollment, error) {
	var p store.PendingEnrollment
	err := c.updateExclusive(ctx, func(tx store.Tx) (err error) {
		if p, err = waitingLocked(tx, id); err != nil {
			return err
		}
		p.State, p.DecidedAt, p.Reason = store.PendingDenied, c.now(), reason
		return tx.PutPending(p)
	})
	if err == nil {
		c.log.Info("enrollment denied", "pending", id, "hostname", p.Hostname, "reason", reason)
	}
	return p, err
}
