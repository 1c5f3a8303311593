package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/translog"
)

// Devices lists the enrolled devices.
func (c *CA) Devices(ctx context.Context) ([]store.Device, error) {
	return list(ctx, c, store.Tx.ListDevices)
}

// Revoke revokes a device for cessationOfOperation (RevokeFor).
func (c *CA) Revoke(ctx context.Context, id certs.DeviceID) (store.Device, error) {
	return c.RevokeFor(ctx, id, translog.ReasonCessationOfOperation)
}

// RevokeFor marks a device revoked (it can no longer renew), revokes its
// unexpired certificates for reason (in the log and the CRL entries),
// records the revocation of its current certificate with the authority,
// and tells the registered listeners (the coordinator) so peers drop it
// at once.
func (c *CA) RevokeFor(ctx context.Context, id certs.DeviceID, reason translog.RevocationReason) (store.Device, error) {
	var dev store.Device
	var cert *x509.Certificate
	err := c.commitLogged(ctx, "revoke", func(tx store.Tx) (err error) {
		dev, err = tx.GetDevice(id)
		if errors.Is(err, store.ErrNotFound) {
			return refuse(CodeNotFound, "no device %s", id)
		} else if err != nil {
			return err
		}
		if dev.State == store.DeviceRevoked {
			return refuse(CodeBadRequest, "device %s is already revoked", id)
		}
		rec, err := tx.GetCertificate(dev.Serial)
		if err != nil {
			return fmt.Errorf("loading current certificate: %w", err)
		}
		if cert, err = x509.ParseCertificate(rec.DER); err != nil {
			return fmt.Errorf("parsing current certificate: %w", err)
		}
		dev.State, dev.RevokedAt = store.DeviceRevoked, c.now()
		if err := tx.PutDevice(dev); err != nil {
			return err
		}
		// Every certificate of the device that has not expired: the
		// current one, superseded ones, and its users' certificates.
		_, err = c.revokeDeviceCertsLocked(tx, id, int(reason))
		return err
	})
	if err != nil {
		return store.Device{}, err
	}
	if err := c.RefreshCRL(ctx); err != nil {
		c.log.Error("publishing CRL after revocation", "device", id, "err", err)
	}
	if err := c.signer.revoke(ctx, cert, "revoked by admin: "+reason.String()); err != nil {
		c.log.Error("authority revocation record", "device", id, "err", err)
	}
	c.log.Info("device revoked", "device", id, "serial", dev.Serial, "reason", reason, "by", AdminPeerOf(ctx))
	c.onRevoke.call(id)
	return dev, nil
}

// DeviceActive reports whether id is enrolled and not revoked. The
// coordinator uses it when it runs beside the CA.
func (c *CA) DeviceActive(ctx context.Context, id certs.DeviceID) error {
	return c.store.View(ctx, func(tx store.Tx) error {
		dev, err := tx.GetDevice(id)
		if err != nil {
			return fmt.Errorf("device %s: %w", id, err)
		}
		if dev.State != store.DeviceActive {
			return fmt.Errorf("device %s is %s", id, dev.State)
		}
		return nil
	})
}

// list reads a list of records in a read-only transaction.
func list[T any](ctx context.Context, c *CA, read func(store.Tx) ([]T, error)) ([]T, error) {
	var out []T
	err := c.store.View(ctx, func(tx store.Tx) (err error) {
		out, err = read(tx)
		return err
	})
	return out, err
}
