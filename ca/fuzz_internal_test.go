package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"

	"go.step.sm/crypto/x25519"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/fuzzedit"
	"github.com/certmesh/certmesh/internal/wire"
)

// FuzzCheckCSRAndProof: the CSR, WireGuard key and XEdDSA proof of an
// enrollment or renewal come from the network. Nothing panics, every
// refusal is a typed *Error, and a request is accepted only for the keys
// whose holder made the genuine one: no mutation makes a proof for another
// device key or another WireGuard key.
func FuzzCheckCSRAndProof(f *testing.F) {
	dev, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "fuzz"}}, dev)
	if err != nil {
		f.Fatal(err)
	}
	parsed, err := x509.ParseCertificateRequest(csr)
	if err != nil {
		f.Fatal(err)
	}
	wgPub, wgPriv, err := x25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	const nonce = "fuzz-nonce"
	proof, err := x25519.Sign(rand.Reader, wgPriv, wire.ProofMessage(nonce, parsed.RawSubjectPublicKeyInfo))
	if err != nil {
		f.Fatal(err)
	}
	if _, err := checkCSRAndProof(csr, certs.WireGuardKey(wgPub), nonce, proof); err != nil {
		f.Fatalf("the genuine request is refused: %v", err)
	}
	// Every process (each fuzz worker runs this set-up again) has keys of
	// its own: the fuzzer edits this process's genuine request.
	f.Add([]byte(nil), []byte(nil), "", []byte(nil))
	f.Add(fuzzedit.Xor(40, 1), []byte(nil), "", []byte(nil))
	f.Add(fuzzedit.Cut(len(csr)/2), []byte(nil), "", []byte(nil))
	f.Add([]byte(nil), fuzzedit.Xor(0, 1), "", []byte(nil))
	f.Add([]byte(nil), []byte(nil), "x", []byte(nil))
	f.Add([]byte(nil), []byte(nil), "", fuzzedit.Set(63, 0))
	f.Add(fuzzedit.Cut(0), fuzzedit.Cut(0), "", fuzzedit.Cut(0))
	f.Fuzz(func(t *testing.T, csrEdits, wgEdits []byte, nonceSuffix string, proofEdits []byte) {
		csrDER := fuzzedit.Apply(csr, csrEdits)
		wg := fuzzedit.Apply(wgPub, wgEdits)
		sig := fuzzedit.Apply(proof, proofEdits)
		var key certs.WireGuardKey
		if len(wg) != len(key) {
			return
		}
		copy(key[:], wg)
		cr, err := checkCSRAndProof(csrDER, key, nonce+nonceSuffix, sig)
		if err != nil {
			if e, ok := err.(*Error); !ok || e.Reason == "" {
				t.Fatalf("refusal %v (%T) is not a coded *Error", err, err)
			}
			return
		}
		if nonceSuffix != "" || !bytes.Equal(cr.csr.RawSubjectPublicKeyInfo, parsed.RawSubjectPublicKeyInfo) || !bytes.Equal(wg, wgPub) {
			t.Fatalf("accepted a request nobody proved: nonce +%q, device %x, WireGuard %x", nonceSuffix, cr.csr.RawSubjectPublicKeyInfo, wg)
		}
	})
}
