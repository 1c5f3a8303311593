package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"slices"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
)

// RenewExpired renews the machine certificate of a device whose
// certificate expired less than renew_after_expiry ago (say, the CA was
// down longer than a certificate's life), without a new token. The TLS
// handshake refuses an expired client certificate, so the request carries
// the certificate and proves possession of both keys it certifies over a
// fresh CA nonce: the device key (a TPM device's key signs inside its TPM)
// signs wire.DeviceProofMessage, the WireGuard key signs the usual proof.
// The device must be active and the certificate its current one, or one
// whose renewal answer was lost (see Renew); a revoked device never comes
// back this way.
func (c *CA) RenewExpired(ctx context.Context, req wire.RenewExpiredRequest) (wire.CertificateResponse, error) {
	cert, err := x509.ParseCertificate(req.Certificate)
	if err != nil {
		return wire.CertificateResponse{}, refuseErr(CodeBadRequest, err, "certificate is not valid DER")
	}
	// The chain and profile as they were while the certificate was valid.
	b := certs.Bundle{Machine: cert, Intermediates: []*x509.Certificate{c.inter.Cert}}
	id, err := certs.Verify(b, c.roots, nil, cert.NotAfter)
	if err != nil {
		return wire.CertificateResponse{}, refuseErr(CodeForbidden, err, "certificate")
	}
	now, window := c.now(), c.cfg.RenewalAfterExpiry()
	if now.After(cert.NotAfter.Add(window)) {
		return wire.CertificateResponse{}, refuse(CodeForbidden,
			"certificate %s expired at %s, longer ago than renew_after_expiry (%s): enroll the device again with a token",
			id.Serial, cert.NotAfter.UTC().Format(time.RFC3339), window)
	}
	cr, err := c.spendAndCheck(ctx, nonceAnonymous, req.CSR, req.WireGuardKey, req.Nonce, req.Proof)
	if err != nil {
		return wire.CertificateResponse{}, err
	}
	if !slices.Equal(cr.csr.RawSubjectPublicKeyInfo, cert.RawSubjectPublicKeyInfo) {
		return wire.CertificateResponse{}, refuse(CodeBadCSR, "renewal must keep the device key of the certificate")
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return wire.CertificateResponse{}, refuse(CodeBadCSR, "device key must be ECDSA P-256, got %s", describeKey(cert.PublicKey))
	}
	h := sha256.Sum256(wire.DeviceProofMessage(req.Nonce, req.Certificate, req.WireGuardKey))
	if !ecdsa.VerifyASN1(pub, h[:], req.DeviceProof) {
		return wire.CertificateResponse{}, refuse(CodeBadProof, "proof of possession of the device key does not verify")
	}
	c.log.Info("renewal after expiry", "device", id.DeviceID, "serial", id.Serial, "expired", cert.NotAfter)
	if cr.routes, cr.svcs, err = c.parseAsks(req.Asks); err != nil {
		return wire.CertificateResponse{}, err
	}
	return c.renew(ctx, id, cr)
}
