package ca

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/netip"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/translog"
)

// learn records in certmesh.db what the log entries [from, l.Size())
// say the lost CA did: each certificate (a device's newest becomes its
// current one), each revocation, the highest overlay address certified
// and the CRL number in res. It refuses a policy version newer than the
// restored policy.json. Learning again is harmless.
func learn(stateDir string, cfg *Config, roots *certs.Roots, inter *x509.Certificate, l *translog.Log, from uint64, res *CatchUpResult) error {
	pol, err := loadPolicy(stateDir)
	if err != nil {
		return err
	}
	s, err := openStore(stateDir, cfg, roots.Certificates()[0])
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Update(context.Background(), func(tx store.Tx) error {
		for start := from; start < l.Size(); {
			es, err := l.Entries(start, l.Size())
			if err != nil {
				return err
			}
			for _, le := range es {
				e, err := translog.ParseLeaf(le.Leaf)
				if err != nil {
					return fmt.Errorf("log entry %d: %w", le.Index, err)
				}
				switch e.Kind {
				case translog.KindCertificate:
					err = learnCertificate(tx, cfg, roots, inter, e.Certificate, res)
				case translog.KindRevocation:
					err = learnRevocation(tx, e.Revocation, res)
				case translog.KindPolicy:
					if pol != nil && e.Policy.Version > pol.doc.Version {
						err = fmt.Errorf("policy version %d was published after the backup (which has version %d): "+
							"catching up a policy is not built yet; restore a backup taken after it", e.Policy.Version, pol.doc.Version)
					}
				}
				if err != nil {
					return fmt.Errorf("catch-up: log entry %d: %w", le.Index, err)
				}
			}
			start += uint64(len(es))
		}
		if err := tx.RaiseAddressIndex(res.AddressIndex); err != nil {
			return err
		}
		return tx.RaiseCRLNumber(res.CRLNumber)
	})
}

// learnCertificate raises res.AddressIndex past the overlay addresses
// cert holds and, for a machine certificate of this CA, records it.
func learnCertificate(tx store.Tx, cfg *Config, roots *certs.Roots, inter *x509.Certificate, der []byte, res *CatchUpResult) error {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	for _, ip := range cert.IPAddresses {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		a = a.Unmap()
		for _, p := range []netip.Prefix{cfg.OverlayV4, cfg.OverlayV6} {
			if p.Contains(a) {
				idx := new(big.Int).Sub(new(big.Int).SetBytes(a.AsSlice()), new(big.Int).SetBytes(p.Masked().Addr().AsSlice()))
				if idx.IsUint64() {
					res.AddressIndex = maxU(res.AddressIndex, idx.Uint64())
				}
			}
		}
	}
	id, err := certs.VerifyWith(certs.Bundle{Machine: cert, Intermediates: []*x509.Certificate{inter}}, roots, nil, certs.VerifyOptions{Now: cert.NotBefore})
	if err != nil || id.DeviceID == "" {
		return nil // not a device's certificate (its addresses are counted)
	}
	serial := cert.SerialNumber.Text(16)
	if _, err := tx.GetCertificate(serial); err == nil {
		return nil // known
	}
	rec := store.CertRecord{Serial: serial, DeviceID: id.DeviceID, DER: der, IssuedAt: cert.NotBefore, NotAfter: cert.NotAfter}
	if err := tx.PutCertificate(rec); err != nil {
		return err
	}
	res.Certificates++
	dev, err := tx.GetDevice(id.DeviceID)
	if errors.Is(err, store.ErrNotFound) { // enrolled after the backup: its record is its certificate
		fp := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		return tx.PutDevice(store.Device{ID: id.DeviceID, Hostname: id.Hostname, Addresses: id.Addresses, WireGuardKey: id.WireGuardKey,
			DeviceKeyFP: hex.EncodeToString(fp[:]), Attestation: id.Attestation, EKFP: string(id.EK), Tags: id.Tags, State: store.DeviceActive,
			Serial: serial, NotAfter: cert.NotAfter, EnrolledAt: cert.NotBefore, Routes: id.Routes, Services: id.Services,
			RequestedRoutes: id.Routes, ApprovedRoutes: id.Routes, RequestedServices: id.Services, ApprovedServices: id.Services})
	}
	if err != nil || !cert.NotAfter.After(dev.NotAfter) {
		return err
	}
	if old, err := tx.GetCertificate(dev.Serial); err == nil {
		old.Superseded = true
		if err := tx.PutCertificate(old); err != nil {
			return err
		}
	}
	dev.Serial, dev.NotAfter, dev.WireGuardKey = serial, cert.NotAfter, id.WireGuardKey
	return tx.PutDevice(dev)
}

// learnRevocation marks the revoked certificate (and, for a device
// revoked, the device) as revoked.
func learnRevocation(tx store.Tx, r *translog.Revocation, res *CatchUpResult) error {
	rec, err := tx.GetCertificate(r.Serial.Text(16))
	if err != nil {
		return nil // a certificate this CA never recorded
	}
	if rec.RevokedAt.IsZero() {
		rec.RevokedAt, rec.RevokeReason = r.Time, int(r.Reason)
		if err := tx.PutCertificate(rec); err != nil {
			return err
		}
		res.Revocations++
	}
	if r.Reason != translog.RevocationReason(certs.RevokeCessationOfOperation) || r.Email != "" {
		return nil
	}
	dev, err := tx.GetDevice(rec.DeviceID)
	if err != nil || dev.State == store.DeviceRevoked {
		return nil
	}
	dev.State, dev.RevokedAt = store.DeviceRevoked, r.Time
	return tx.PutDevice(dev)
}
