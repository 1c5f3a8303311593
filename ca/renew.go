package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"slices"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/wire"
)

// Renew issues a new machine certificate to a device that presented its
// current one over mTLS. The device key must stay the same; the WireGuard
// key may rotate.
//
// Renewal is idempotent: a device whose last renewal committed here but
// whose answer never arrived (network cut, agent killed before saving it)
// asks again with the certificate it still holds, which was superseded. It
// gets the certificate already issued if that one carries the keys it
// asks for and is not due for renewal itself, or else a fresh one; never a
// refusal. Only the device key's holder can present that certificate, and
// a revoked device's certificates are all revoked.
func (c *CA) Renew(ctx context.Context, peer []*x509.Certificate, req wire.RenewRequest) (wire.CertificateResponse, error) {
	if len(peer) == 0 {
		return wire.CertificateResponse{}, refuse(CodeForbidden, "renewal needs the current machine certificate (mTLS)")
	}
	id, err := certs.Verify(certs.Bundle{Machine: peer[0], Intermediates: peer[1:]}, c.roots, nil, c.now())
	if err != nil {
		return wire.CertificateResponse{}, refuseErr(CodeForbidden, err, "client certificate")
	}
	cr, err := c.spendAndCheck(ctx, nonceAuthenticated, req.CSR, req.WireGuardKey, req.Nonce, req.Proof)
	if err != nil {
		return wire.CertificateResponse{}, err
	}
	if !slices.Equal(cr.csr.RawSubjectPublicKeyInfo, peer[0].RawSubjectPublicKeyInfo) {
		return wire.CertificateResponse{}, refuse(CodeBadCSR, "renewal must keep the device key of the current certificate")
	}
	if cr.routes, cr.svcs, err = c.parseAsks(req.Asks); err != nil {
		return wire.CertificateResponse{}, err
	}
	return c.renew(ctx, id, cr)
}

// renew issues the renewal of a device whose identity id (from a
// certificate it proved to hold) and request cr were checked.
func (c *CA) renew(ctx context.Context, id certs.Identity, cr *checkedRequest) (wire.CertificateResponse, error) {
	var cert *x509.Certificate
	reused := false
	err := c.commitLogged(ctx, "renew", func(tx store.Tx) error {
		dev, superseded, err := renewableDeviceLocked(tx, id, cr.deviceFP)
		if err != nil {
			return err
		}
		dev.RequestedRoutes, dev.RequestedServices = cr.routes, cr.svcs
		if superseded && !c.reissueDue(dev) {
			if cert = c.reusableLocked(tx, dev, cr); cert != nil {
				reused = true
				return tx.PutDevice(dev) // what it asks for now
			}
		}
		if err := checkKeysUnused(tx, cr, dev.ID); err != nil {
			return err
		}
		old, err := tx.GetCertificate(dev.Serial)
		if err == nil {
			old.Superseded = true
			if err := tx.PutCertificate(old); err != nil {
				return err
			}
		}
		dev.WireGuardKey, dev.RenewedAt = cr.wgKey, c.now()
		cert, err = c.issue(ctx, tx, &dev, cr.csr)
		return err
	})
	if err != nil {
		return wire.CertificateResponse{}, err
	}
	if reused {
		c.log.Info("device renewed again with its previous certificate: answering with the one already issued",
			"device", id.DeviceID, "presented", id.Serial, "serial", cert.SerialNumber.Text(16))
	} else {
		c.log.Info("device renewed", "device", id.DeviceID, "serial", cert.SerialNumber.Text(16), "asked_routes", cr.routes, "asked_services", cr.svcs)
	}
	return c.response(id.DeviceID, cert), nil
}

// renewableDeviceLocked returns the device of a verified machine identity
// that may renew: enrolled, active, holding device key deviceFP, and the
// certificate presented is either its current one or an earlier one that
// was superseded and not revoked (superseded = true: the answer to a
// renewal was lost).
func renewableDeviceLocked(tx store.Tx, id certs.Identity, deviceFP string) (dev store.Device, superseded bool, err error) {
	dev, err = tx.GetDevice(id.DeviceID)
	if errors.Is(err, store.ErrNotFound) {
		return dev, false, refuse(CodeForbidden, "device %s is not enrolled", id.DeviceID)
	} else if err != nil {
		return dev, false, err
	}
	if dev.State != store.DeviceActive {
		return dev, false, refuse(CodeForbidden, "device %s is %s", dev.ID, dev.State)
	}
	if dev.DeviceKeyFP != deviceFP {
		return dev, false, refuse(CodeForbidden, "device %s holds another device key", dev.ID)
	}
	if dev.Serial == id.Serial {
		return dev, false, nil
	}
	rec, err := tx.GetCertificate(id.Serial)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (rec.DeviceID != dev.ID || rec.UserID != "")) {
		return dev, false, refuse(CodeForbidden, "certificate %s is not one of device %s", id.Serial, dev.ID)
	} else if err != nil {
		return dev, false, err
	}
	if !rec.RevokedAt.IsZero() {
		return dev, false, refuse(CodeForbidden, "certificate %s is revoked", id.Serial)
	}
	return dev, true, nil
}

// reusableLocked returns the device's current certificate if it can answer
// a repeated renewal: same WireGuard key as asked, not revoked, and not
// due for renewal itself. Otherwise nil (issue a fresh one).
func (c *CA) reusableLocked(tx store.Tx, dev store.Device, cr *checkedRequest) *x509.Certificate {
	if dev.WireGuardKey != cr.wgKey {
		return nil
	}
	rec, err := tx.GetCertificate(dev.Serial)
	if err != nil || !rec.RevokedAt.IsZero() {
		return nil
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil || !c.now().Before(renewAt(cert.NotBefore, cert.NotAfter)) {
		return nil
	}
	return cert
}
