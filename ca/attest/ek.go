package attest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"time"
)

// Policy is what the CA trusts about endorsement keys.
type Policy struct {
	// ManufacturerRoots are the TPM manufacturers' root certificates. An EK
	// whose certificate chains to one of them is accepted. Nil: no EK is
	// accepted by certificate.
	ManufacturerRoots *x509.CertPool
	// ManufacturerIntermediates are intermediate CA certificates to use
	// when building the chain, for EK certificates whose TPM does not
	// carry its issuer (most do not). Optional.
	ManufacturerIntermediates *x509.CertPool
	// AllowedEKs lists EKs accepted by fingerprint, with or without a
	// certificate (an MDM inventory; see [ParseAllowList]). Only keys set
	// to true count.
	AllowedEKs map[EKFingerprint]bool
	// Now returns the time to check EK certificate validity against;
	// nil means time.Now.
	Now func() time.Time
}

// EK is an endorsement key as the agent presents it.
type EK struct {
	// Public is the EK public key. It may be nil when Certificate is set,
	// and must match Certificate's key when both are set.
	Public crypto.PublicKey
	// Certificate is the EK certificate, if the TPM has one.
	Certificate *x509.Certificate
	// Intermediates are extra certificates the agent sent to help build
	// the chain. They are not trusted by themselves.
	Intermediates []*x509.Certificate
}

// Key returns the EK public key: Public, or the certificate's key.
func (ek EK) Key() crypto.PublicKey {
	if ek.Public != nil {
		return ek.Public
	}
	if ek.Certificate != nil {
		return ek.Certificate.PublicKey
	}
	return nil
}

var (
	oidSubjectAltName      = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidSubjectDirAttribute = asn1.ObjectIdentifier{2, 5, 29, 9}
)

// VerifyEK decides whether the EK is genuine under the policy and returns
// its fingerprint. It accepts the EK if its fingerprint is on the
// allow-list, or else if its certificate chains to a manufacturer root.
//
// EK certificates are not web certificates, and the check allows for how
// real ones are made (as step-ca does for its AK certificates): their
// subject is empty and their critical subjectAltName holds only a
// directoryName (TPM manufacturer, model, version), which Go's x509 leaves
// "unhandled"; their extended key usage is tcg-kp-EKCertificate
// (2.23.133.8.1), unknown to Go. Those two critical extensions (SAN and
// subjectDirectoryAttributes) are treated as handled, and any extended key
// usage is accepted. Any other unhandled critical extension still fails.
func (p Policy) VerifyEK(ek EK) (EKFingerprint, error) {
	pub := ek.Key()
	if pub == nil {
		return EKFingerprint{}, refuse(ReasonMalformed, "no EK public key or certificate given")
	}
	if ek.Public != nil && ek.Certificate != nil {
		if !publicKeysEqual(ek.Public, ek.Certificate.PublicKey) {
			return EKFingerprint{}, refuse(ReasonEKMismatch, "the EK public key is not the key of the EK certificate (issuer %q, serial %s)",
				ek.Certificate.Issuer.String(), ek.Certificate.SerialNumber)
		}
	}
	if err := checkEKKey(pub); err != nil {
		return EKFingerprint{}, err
	}
	fp, err := FingerprintEK(pub)
	if err != nil {
		return EKFingerprint{}, refuseErr(ReasonEKUnsupported, err, "cannot encode the EK public key")
	}
	if p.AllowedEKs[fp] {
		return fp, nil
	}
	if ek.Certificate == nil {
		return fp, refuse(ReasonEKNotAllowed, "EK %s has no certificate and its fingerprint is not on the allow-list", fp)
	}
	if p.ManufacturerRoots == nil {
		return fp, refuse(ReasonEKUntrusted, "EK %s: no manufacturer roots are configured and its fingerprint is not on the allow-list", fp)
	}
	if err := p.verifyEKChain(ek); err != nil {
		return fp, refuseErr(ReasonEKUntrusted, err,
			"EK %s: certificate (issuer %q, serial %s) does not chain to a configured manufacturer root, and its fingerprint is not on the allow-list",
			fp, ek.Certificate.Issuer.String(), ek.Certificate.SerialNumber)
	}
	return fp, nil
}

func (p Policy) verifyEKChain(ek EK) error {
	// Work on a copy: the caller's certificate is not ours to change.
	leaf := *ek.Certificate
	if len(leaf.UnhandledCriticalExtensions) > 0 {
		var still []asn1.ObjectIdentifier
		for _, oid := range leaf.UnhandledCriticalExtensions {
			if oid.Equal(oidSubjectAltName) || oid.Equal(oidSubjectDirAttribute) {
				continue
			}
			still = append(still, oid)
		}
		leaf.UnhandledCriticalExtensions = still
	}
	inter := x509.NewCertPool()
	if p.ManufacturerIntermediates != nil {
		inter = p.ManufacturerIntermediates.Clone()
	}
	for _, c := range ek.Intermediates {
		inter.AddCert(c)
	}
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         p.ManufacturerRoots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err
}

func checkEKKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N == nil || k.N.BitLen() < 2048 {
			return refuse(ReasonEKUnsupported, "RSA EK of %d bits; at least 2048 are required", bitLen(k))
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return refuse(ReasonEKUnsupported, "ECC EK on curve %s; P-256 or P-384 is required", curveName(k))
		}
		if _, err := k.ECDH(); err != nil {
			return refuseErr(ReasonEKUnsupported, err, "ECC EK is not a valid point")
		}
	default:
		return refuse(ReasonEKUnsupported, "EK public key of type %T; RSA or ECDSA is required", pub)
	}
	return nil
}

func bitLen(k *rsa.PublicKey) int {
	if k.N == nil {
		return 0
	}
	return k.N.BitLen()
}

func curveName(k *ecdsa.PublicKey) string {
	if k.Curve == nil {
		return "none"
	}
	return k.Curve.Params().Name
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}
