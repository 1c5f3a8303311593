//go:build tpmsimulator

package ca_test

import (
	"net/http"
	"testing"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
)

// An EK on the allow-list (an MDM export) enrolls without a token and
// without an EK certificate.
func TestTPMAllowListedEKWithoutToken(t *testing.T) {
	e := newTPMEnv(t, nil)
	if err := e.CA.SetEKs([]string{e.EK.Fingerprint.String()}, true); err != nil {
		t.Fatal(err)
	}
	d := newTestDevice(t, "mdm-laptop")
	a := &tpmAttempt{Nonce: e.Nonce(t)}
	req := e.ChallengeRequest(t)
	req.EKCert = nil
	st, body := e.Challenge(t, req)
	a.Challenge = decodeOK[wire.TPMChallengeResponse](t, st, body)
	var err error
	if a.Secret, err = e.TPM.ActivateCredential(t.Context(), a.Challenge.Credential, a.Challenge.Secret); err != nil {
		t.Fatal(err)
	}
	e.Certify(t, a, d)
	st, body = e.Send(t, d, "", a)
	d.Key = a.Signer
	id := d.Accept(t, e.testEnv, decodeOK[wire.CertificateResponse](t, st, body))
	if id.Attestation != certs.AttestationTPM || string(id.EK) != e.EK.Fingerprint.String() {
		t.Fatalf("level %q EK %q", id.Attestation, id.EK)
	}
	if dev := deviceByID(t, e.testEnv, id.DeviceID); dev.TokenID != "" {
		t.Fatalf("device recorded token %q", dev.TokenID)
	}
}

// A CA that requires a TPM refuses token enrollment and takes a TPM one.
func TestTPMRequired(t *testing.T) {
	e := newTPMEnv(t, func(c *ca.Config) { c.TPM.RequireTPM = true })
	tok := e.Token(t)
	st, body := e.Post(t, e.Client(t), wire.PathEnroll, newTestDevice(t, "no-tpm").EnrollRequest(t, tok, e.Nonce(t)))
	wantRefusal(t, st, body, http.StatusForbidden, ca.CodeBadAttestation, "only enrolls devices with a TPM")
	e.wantNothingRecorded(t)
	e.EnrollTPM(t, newTestDevice(t, "tpm-laptop"), tok)
}
