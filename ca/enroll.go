package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/netip"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/translog"
	"go.step.sm/crypto/x25519"
)

// checkedRequest is what remains of an enrollment or renewal request once
// its CSR and proof of possession were verified.
type checkedRequest struct {
	csr      *x509.CertificateRequest
	wgKey    certs.WireGuardKey
	deviceFP string
	// routes and svcs are what a renewal asks for (enrollments carry
	// theirs in the enrollment).
	routes []netip.Prefix
	svcs   []certs.Service
}

// spendAndCheck spends a request's nonce for use, then checks its CSR and
// proof (checkCSRAndProof).
func (c *CA) spendAndCheck(ctx context.Context, use nonceUse, csrDER []byte, wg certs.WireGuardKey, nonce string, proof []byte) (*checkedRequest, error) {
	if err := c.takeNonce(ctx, nonce, use); err != nil {
		return nil, err
	}
	return checkCSRAndProof(csrDER, wg, nonce, proof)
}

// checkCSRAndProof verifies the CSR's self-signature and key type, and the
// XEdDSA proof that the requester holds the WireGuard private key, bound to
// nonce and to the CSR's device key.
func checkCSRAndProof(csrDER []byte, wg certs.WireGuardKey, nonce string, proof []byte) (*checkedRequest, error) {
	if len(csrDER) == 0 {
		return nil, refuse(CodeBadCSR, "certificate request is missing")
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, refuseErr(CodeBadCSR, err, "certificate request is not valid DER")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, refuseErr(CodeBadCSR, err, "certificate request is not signed by its key")
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, refuse(CodeBadCSR, "device key must be ECDSA P-256, got %s", describeKey(csr.PublicKey))
	}
	if wg.IsZero() {
		return nil, refuse(CodeBadProof, "WireGuard public key is missing")
	}
	if wg[31]&0x80 != 0 {
		// X25519 ignores the top bit, so this key has a second spelling
		// that the proof would verify under too: one key, one spelling
		// (else a device could enroll a key already in use, told apart
		// only by a bit WireGuard never reads).
		return nil, refuse(CodeBadProof, "WireGuard public key is not canonical: its most significant bit (bit 255) is set")
	}
	if len(proof) != x25519.SignatureSize {
		return nil, refuse(CodeBadProof, "proof of possession of the WireGuard key is %d bytes, want a %d-byte XEdDSA signature", len(proof), x25519.SignatureSize)
	}
	if !x25519.Verify(x25519.PublicKey(wg[:]), wire.ProofMessage(nonce, csr.RawSubjectPublicKeyInfo), proof) {
		return nil, refuse(CodeBadProof, "proof of possession of the WireGuard key does not verify")
	}
	fp := sha256.Sum256(csr.RawSubjectPublicKeyInfo)
	return &checkedRequest{csr: csr, wgKey: wg, deviceFP: hex.EncodeToString(fp[:])}, nil
}

// describeKey names a public key's algorithm and size for an error message.
func describeKey(k any) string {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	default:
		return fmt.Sprintf("%T", k)
	}
}

// Enroll handles a first enrollment with a one-time token.
func (c *CA) Enroll(ctx context.Context, req wire.EnrollRequest) (wire.CertificateResponse, error) {
	return c.EnrollFrom(ctx, req, "")
}

// enrollFrom is EnrollFrom (metrics.go counts its answers).
func (c *CA) enrollFrom(ctx context.Context, req wire.EnrollRequest, remote string) (wire.CertificateResponse, error) {
	host, err := certs.ParseHostname(req.Hostname)
	if err != nil {
		return wire.CertificateResponse{}, refuseErr(CodeBadRequest, err, "hostname")
	}
	cr, err := c.spendAndCheck(ctx, nonceAnonymous, req.CSR, req.WireGuardKey, req.Nonce, req.Proof)
	if err != nil {
		return wire.CertificateResponse{}, err
	}
	e := enrollment{host: host, cr: cr, level: certs.AttestationToken, remote: remote}
	if e.routes, e.svcs, err = c.parseAsks(req.Asks); err != nil {
		return wire.CertificateResponse{}, err
	}
	tokenNeeded := true
	switch {
	case req.TPM != nil:
		s, err := c.checkTPM(req.TPM, req.Nonce, cr)
		if err != nil {
			return wire.CertificateResponse{}, err
		}
		e.level, e.ekFP, e.vendor = certs.AttestationTPM, s.ek.String(), s.vendor
		// An EK on the allow-list (an MDM export) is authorization enough;
		// one that is only genuine (manufacturer certificate) also needs a
		// token, or any TPM of that make could join.
		tokenNeeded = !s.allowed || req.Token != ""
	case c.cfg.TPM != nil && c.cfg.TPM.RequireTPM:
		return wire.CertificateResponse{}, refuse(CodeBadAttestation, "this CA only enrolls devices with a TPM (run the agent with --tpm)")
	}
	if c.cfg.Approval == ApprovalRequired {
		return c.queue(ctx, req.Token, tokenNeeded, e)
	}
	devID, err := certs.NewDeviceID()
	if err != nil {
		return wire.CertificateResponse{}, err
	}
	var dev store.Device
	var replaced []certs.DeviceID
	repeated := false
	err = c.commitLogged(ctx, "enroll", func(tx store.Tx) error {
		var tok store.Token
		if tokenNeeded {
			var err error
			if tok, err = c.redeemToken(tx, req.Token, devID); err != nil {
				if dev, repeated = enrolledAgainLocked(tx, req.Token, cr, err); repeated {
					return nil
				}
				return err
			}
		}
		if e.ekFP != "" {
			var err error
			if replaced, err = c.replaceEKDevicesLocked(tx, certs.EKFingerprint(e.ekFP)); err != nil {
				return err
			}
		}
		if err := checkKeysUnused(tx, cr, ""); err != nil {
			return err
		}
		var err error
		dev, err = c.createDevice(ctx, tx, devID, e, tok.Tags, tok.ID)
		return err
	})
	if err != nil {
		return wire.CertificateResponse{}, err
	}
	if repeated {
		c.log.Info("device enrolled again with its token and keys (the first answer was lost): answering with its certificate",
			"device", dev.ID, "serial", dev.Serial)
	}
	c.afterReplace(ctx, replaced)
	return c.deviceResponse(ctx, dev)
}

// createDevice allocates addresses (never reused), issues the first
// machine certificate and records the device, inside tx.
func (c *CA) createDevice(ctx context.Context, tx store.Tx, devID certs.DeviceID, e enrollment, tags []certs.Tag, tokenID string) (store.Device, error) {
	idx, err := tx.NextAddressIndex()
	if err != nil {
		return store.Device{}, fmt.Errorf("allocating address: %w", err)
	}
	addrs, err := addressesFor(c.cfg, idx)
	if err != nil {
		return store.Device{}, err
	}
	dev := store.Device{
		ID: devID, Hostname: e.host, Addresses: addrs, WireGuardKey: e.cr.wgKey, DeviceKeyFP: e.cr.deviceFP,
		Attestation: e.level, EKFP: e.ekFP, Tags: tags, State: store.DeviceActive,
		TokenID: tokenID, EnrolledAt: c.now(), RequestedRoutes: e.routes, RequestedServices: e.svcs,
	}
	cert, err := c.issue(ctx, tx, &dev, e.cr.csr)
	if err != nil {
		return store.Device{}, err
	}
	c.log.Info("device enrolled", "device", devID, "hostname", e.host, "attestation", e.level, "serial", cert.SerialNumber.Text(16),
		"routes", dev.Routes, "services", dev.Services)
	return dev, nil
}

// deviceResponse answers with the device's current certificate.
func (c *CA) deviceResponse(ctx context.Context, dev store.Device) (wire.CertificateResponse, error) {
	var der []byte
	err := c.store.View(ctx, func(tx store.Tx) error {
		rec, err := tx.GetCertificate(dev.Serial)
		der = rec.DER
		return err
	})
	if err != nil {
		return wire.CertificateResponse{}, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return wire.CertificateResponse{}, err
	}
	return c.response(dev.ID, cert), nil
}

// issue signs a machine certificate for dev and records it, its log entry
// and the device, in the staged tx of a logged change.
func (c *CA) issue(ctx context.Context, tx store.Tx, dev *store.Device, csr *x509.CertificateRequest) (*x509.Certificate, error) {
	defer c.observeIssue(time.Now())
	p := certs.MachineProfile{
		TrustDomain: c.cfg.TrustDomain, DeviceID: dev.ID, Hostname: dev.Hostname, Addresses: dev.Addresses,
		WireGuardKey: dev.WireGuardKey, Attestation: dev.Attestation, EK: certs.EKFingerprint(dev.EKFP), Tags: dev.Tags,
	}
	p.Routes, p.Services = c.certified(*dev)
	if err := atStep(stepSign); err != nil {
		return nil, err
	}
	now := c.now()
	cert, err := c.signer.signMachine(ctx, csr, p, now, time.Duration(c.cfg.MachineCertLifetime))
	if err != nil {
		return nil, err
	}
	serial := cert.SerialNumber.Text(16)
	if err := tx.PutCertificate(store.CertRecord{Serial: serial, DeviceID: dev.ID, DER: cert.Raw, IssuedAt: now, NotAfter: cert.NotAfter}); err != nil {
		return nil, fmt.Errorf("recording certificate: %w", err)
	}
	if err := logInTx(tx, translog.CertificateEntry(cert.Raw, c.inter.Cert.Raw)); err != nil {
		return nil, err
	}
	dev.Serial, dev.NotAfter = serial, cert.NotAfter
	dev.Routes, dev.Services, dev.ReissueDue = p.Routes, p.Services, false
	if err := tx.PutDevice(*dev); err != nil {
		return nil, fmt.Errorf("recording device: %w", err)
	}
	return cert, nil
}

// checkKeysUnused refuses a WireGuard or device key that another active
// device already holds. It looks the keys up by index: its cost does not
// grow with the number of devices (BenchmarkEnroll).
func checkKeysUnused(tx store.Tx, cr *checkedRequest, self certs.DeviceID) error {
	for _, k := range []store.DeviceKey{store.WireGuardKeyOf(cr.wgKey), store.DeviceKeyOf(cr.deviceFP)} {
		devs, err := tx.ActiveDevicesByKey(k)
		if err != nil {
			return fmt.Errorf("looking up the devices holding the request's keys: %w", err)
		}
		for _, d := range devs {
			if d.ID == self {
				continue
			}
			if k.Kind == store.KeyWireGuard {
				return refuse(CodeKeyInUse, "WireGuard key is already used by device %s", d.ID)
			}
			return refuse(CodeKeyInUse, "device key is already enrolled as device %s", d.ID)
		}
	}
	return nil
}

func (c *CA) response(id certs.DeviceID, cert *x509.Certificate) wire.CertificateResponse {
	c.publishCheckpoint()
	return wire.CertificateResponse{
		DeviceID: id, Bundle: c.bundleFor(cert), CoordinatorURL: c.cfg.CoordinatorURL,
		OverlayRoutes: c.cfg.Overlays(), NotAfter: cert.NotAfter,
		Inclusion: c.inclusion(cert), LogKey: c.logVKey, Policy: c.Policy(),
	}
}
