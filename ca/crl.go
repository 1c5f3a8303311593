package ca

import (
	"context"
	"fmt"
	"math/big"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/ticker"
	"github.com/certmesh/certmesh/translog"
)

// DefaultCRLNextUpdate is how long a CRL is current: agents treat one past
// its nextUpdate (plus their grace) as stale. The CA publishes a new one at
// half that interval and on every revocation.
const DefaultCRLNextUpdate = 5 * time.Minute

// CRL returns the current CRL (DER), nil before the first.
func (c *CA) CRL() []byte { return c.crlDoc().raw }

// crlDoc is the current CRL (none before the first).
func (c *CA) crlDoc() document {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.crl
}

// OnCRL registers a function called with every new CRL (the coordinator
// relays it).
func (c *CA) OnCRL(fn func(der []byte)) { c.onCRL.add(fn) }

func (c *CA) crlInterval() time.Duration {
	if c.cfg.CRLNextUpdate > 0 {
		return time.Duration(c.cfg.CRLNextUpdate)
	}
	return DefaultCRLNextUpdate
}

// RefreshCRL signs a new CRL with the intermediate: every revoked
// certificate that has not expired, a number that only grows (kept in the
// database), nextUpdate one interval away. Then it tells the listeners.
func (c *CA) RefreshCRL(ctx context.Context) error {
	if c.restored != nil {
		return nil // a number agents may have passed: none until caught up
	}
	c.crlMu.Lock()
	defer c.crlMu.Unlock()
	now := c.now()
	var number uint64
	var revoked []certs.RevokedCert
	err := c.store.Update(ctx, func(tx store.Tx) error {
		// By index: expired certificates need no CRL entry and cost nothing.
		recs, err := tx.RevokedCertificates(now)
		if err != nil {
			return err
		}
		for _, r := range recs {
			serial, ok := new(big.Int).SetString(r.Serial, 16)
			if !ok {
				return fmt.Errorf("certificate record with serial %q", r.Serial)
			}
			revoked = append(revoked, certs.RevokedCert{Serial: serial, RevokedAt: r.RevokedAt, Reason: r.RevokeReason})
		}
		number, err = tx.NextCRLNumber()
		return err
	})
	if err != nil {
		return fmt.Errorf("building CRL: %w", err)
	}
	der, err := certs.NewCRL(c.inter, new(big.Int).SetUint64(number), now.Add(-backdateOf(c.cfg.CertBackdate)), now.Add(c.crlInterval()), revoked)
	if err != nil {
		return fmt.Errorf("signing CRL: %w", err)
	}
	c.mu.Lock()
	c.crl = newDocument(der)
	c.mu.Unlock()
	c.log.Debug("CRL published", "number", number, "entries", len(revoked))
	c.publishCheckpoint()
	c.onCRL.call(der)
	return nil
}

// RunCRL republishes the CRL at half its interval until ctx ends.
func (c *CA) RunCRL(ctx context.Context) {
	c.every(ctx, c.crlInterval()/2, "refreshing CRL", c.RefreshCRL)
}

// every runs fn every period until ctx ends, logging its errors as what.
func (c *CA) every(ctx context.Context, period time.Duration, what string, fn func(context.Context) error) {
	ticker.Run(ctx, period, func() {
		if err := fn(ctx); err != nil {
			c.log.Error(what, "err", err)
		}
	})
}

// revokeDeviceCertsLocked revokes every unexpired certificate issued for
// device id (machine and user certificates), inside the staged tx of a
// logged change, and returns how many.
func (c *CA) revokeDeviceCertsLocked(tx store.Tx, id certs.DeviceID, reason int) (int, error) {
	recs, err := tx.CertificatesOfDevice(id)
	if err != nil {
		return 0, fmt.Errorf("listing the certificates of device %s: %w", id, err)
	}
	return c.revokeCertsLocked(tx, recs, reason)
}

// revokeUserCertsLocked revokes every unexpired certificate of user id.
func (c *CA) revokeUserCertsLocked(tx store.Tx, id certs.UserID, reason int) (int, error) {
	recs, err := tx.CertificatesOfUser(id)
	if err != nil {
		return 0, fmt.Errorf("listing the certificates of user %s: %w", id, err)
	}
	return c.revokeCertsLocked(tx, recs, reason)
}

// revokeCertsLocked marks every unexpired certificate of recs as revoked,
// inside the staged tx of a logged change, and returns how many.
func (c *CA) revokeCertsLocked(tx store.Tx, recs []store.CertRecord, reason int) (int, error) {
	now, n := c.now(), 0
	var entries []translog.Entry
	for _, r := range recs {
		if !r.RevokedAt.IsZero() || now.After(r.NotAfter) {
			continue
		}
		r.RevokedAt, r.RevokeReason = now, reason
		if err := tx.PutCertificate(r); err != nil {
			return n, err
		}
		e, err := revocationEntry(tx, r, now, reason)
		if err != nil {
			return n, err
		}
		entries = append(entries, e)
		n++
	}
	if len(entries) > 0 {
		if err := logInTx(tx, entries...); err != nil {
			return n, err
		}
	}
	return n, nil
}
