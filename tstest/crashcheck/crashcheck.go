// Package crashcheck compares what the CA's database, its transparency log
// and its CRL hold after a crash or a failed write: every certificate the
// log shows is one the database has (so an admin can revoke it), every
// certificate the database has is in the log, every revocation is in all
// three, and no change is left half-done. The crash tests of ca and of
// tstest/e2e share it.
package crashcheck

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/translog"
)

// State is what the three hold.
type State struct {
	Log     []translog.LoggedEntry
	Certs   []store.CertRecord
	Devices []store.Device
	Intents []store.Intent
	CRL     *x509.RevocationList
	Now     time.Time
}

// Problems lists every disagreement (none: consistent).
func (s State) Problems() []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	for _, in := range s.Intents {
		bad("intent %s (%s, %s) is still outstanding", in.ID, in.Op, in.CreatedAt.Format(time.RFC3339Nano))
	}
	db := map[string]store.CertRecord{}
	for _, r := range s.Certs {
		db[r.Serial] = r
	}
	logged, loggedRevoked := map[string]bool{}, map[string]bool{}
	for _, le := range s.Log {
		e, err := translog.ParseLeaf(le.Leaf)
		if err != nil {
			bad("log entry %d: %v", le.Index, err)
			continue
		}
		switch e.Kind {
		case translog.KindCertificate:
			c, err := x509.ParseCertificate(e.Certificate)
			if err != nil {
				bad("log entry %d: %v", le.Index, err)
				continue
			}
			serial := c.SerialNumber.Text(16)
			logged[serial] = true
			if r, ok := db[serial]; !ok {
				bad("certificate %s (%s) is in the log (entry %d) but not in the CA database: it cannot be revoked", serial, c.Subject, le.Index)
			} else if string(r.DER) != string(e.Certificate) {
				bad("certificate %s: the log (entry %d) and the database hold different certificates", serial, le.Index)
			}
		case translog.KindRevocation:
			serial := e.Revocation.Serial.Text(16)
			loggedRevoked[serial] = true
			if r, ok := db[serial]; !ok || r.RevokedAt.IsZero() {
				bad("the log revokes certificate %s (entry %d), the database does not", serial, le.Index)
			}
		}
	}
	inCRL := map[string]bool{}
	if s.CRL != nil {
		for _, e := range s.CRL.RevokedCertificateEntries {
			inCRL[e.SerialNumber.Text(16)] = true
		}
	} else {
		bad("no CRL")
	}
	for _, r := range s.Certs {
		if !logged[r.Serial] {
			bad("certificate %s of device %s is in the database but not in the log", r.Serial, r.DeviceID)
		}
		if r.RevokedAt.IsZero() {
			if inCRL[r.Serial] {
				bad("the CRL lists certificate %s, which the database does not revoke", r.Serial)
			}
			continue
		}
		if !loggedRevoked[r.Serial] {
			bad("the database revokes certificate %s, the log does not", r.Serial)
		}
		if s.CRL != nil && s.Now.Before(r.NotAfter) && !inCRL[r.Serial] {
			bad("the database revokes certificate %s, the CRL does not list it", r.Serial)
		}
	}
	for _, d := range s.Devices {
		if _, ok := db[d.Serial]; !ok {
			bad("device %s: its current certificate %s is not in the database", d.ID, d.Serial)
		}
	}
	return out
}

// ReadLog returns every entry of the log c serves.
func ReadLog(ctx context.Context, c *translog.Client, v *translog.Verifier) ([]translog.LoggedEntry, error) {
	signed, err := c.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	cp, err := v.ParseCheckpoint(signed)
	if err != nil {
		return nil, err
	}
	var out []translog.LoggedEntry
	for uint64(len(out)) < cp.Size {
		es, err := c.Entries(ctx, uint64(len(out)), cp.Size)
		if err != nil {
			return nil, err
		}
		out = append(out, es...)
	}
	return out, nil
}
