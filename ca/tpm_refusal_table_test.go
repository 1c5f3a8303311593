//go:build tpmsimulator

package ca_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"testing"
	"time"

	"go.step.sm/crypto/x25519"

	"github.com/certmesh/certmesh/agent/tpmkey"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/ca/attest"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/tpmtest"
)

// tpmRefusal is one bad TPM enrollment. send makes it (with a token that
// is otherwise good) and returns the refusal.
type tpmRefusal struct {
	name   string
	send   func(t *testing.T, e *tpmEnv, d *testDevice, token string) (int, []byte)
	status int
	code   ca.Code
	msgs   []string
}

// challengeWith posts the agent's challenge request after edit spoiled it.
func challengeWith(edit func(t *testing.T, e *tpmEnv, r *wire.TPMChallengeRequest)) func(*testing.T, *tpmEnv, *testDevice, string) (int, []byte) {
	return func(t *testing.T, e *tpmEnv, _ *testDevice, _ string) (int, []byte) {
		r := e.ChallengeRequest(t)
		edit(t, e, &r)
		return e.Challenge(t, r)
	}
}

// spoil makes a correct attempt and lets edit spoil it before it is sent.
func spoil(edit func(t *testing.T, e *tpmEnv, d *testDevice, a *tpmAttempt)) func(*testing.T, *tpmEnv, *testDevice, string) (int, []byte) {
	return func(t *testing.T, e *tpmEnv, d *testDevice, token string) (int, []byte) {
		a := e.Attempt(t, d)
		edit(t, e, d, a)
		return e.Send(t, d, token, a)
	}
}

func softwareKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var tpmRefusals = []tpmRefusal{
	// The endorsement key, at the challenge.
	{
		name: "EK certificate from an unknown manufacturer",
		send: challengeWith(func(t *testing.T, e *tpmEnv, r *wire.TPMChallengeRequest) {
			r.EKCert = tpmtest.NewNamedManufacturer(t, "Rogue TPM Vendor").IssueEKCert(t, e.EK.Public).Raw
		}),
		status: http.StatusForbidden, code: ca.CodeBadAttestation,
		msgs: []string{"ek-untrusted", "does not chain to a configured manufacturer root"},
	},
	{
		name: "EK without certificate not on the allow-list",
		send: challengeWith(func(t *testing.T, e *tpmEnv, r *wire.TPMChallengeRequest) {
			r.EKCert = nil
		}),
		status: http.StatusForbidden, code: ca.CodeBadAttestation,
		msgs: []string{"ek-not-allowed", "not on the allow-list"},
	},
	{
		name: "EK public key that is not the certificate's",
		send: challengeWith(func(t *testing.T, e *tpmEnv, r *wire.TPMChallengeRequest) {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				t.Fatal(err)
			}
			r.EKCert = e.Mfr.IssueEKCert(t, &k.PublicKey).Raw // genuine, of another TPM
		}),
		status: http.StatusForbidden, code: ca.CodeBadAttestation,
		msgs: []string{"ek-mismatch", "not the key of the EK certificate"},
	},

	// The attestation key.
	{
		name: "AK not restricted at the challenge",
		send: challengeWith(func(t *testing.T, e *tpmEnv, r *wire.TPMChallengeRequest) {
			r.AKPublic = e.TPM.UnrestrictedSigningKey(t).Public
		}),
		status: http.StatusForbidden, code: ca.CodeBadAttestation,
		msgs: []string{"ak-not-restricted", "restricted"},
	},
	{
		// The challenge refuses an unrestricted AK, so its forgery can
		// only be presented in a session bound to the real AK.
		name: "certification forged by an unrestricted key",
		send: spoil(func(t *testing.T, e *tpmEnv, d *testDevice, a *tpmAttempt) {
			soft := softwareKey(t)
			keyPub := tpmtest.SoftwareKeyPublic(t, &soft.PublicKey)
			qd := attest.QualifyingData([]byte(a.Nonce), d.WGPub[:])
			ci, sig := e.TPM.ForgeCertification(t, e.TPM.UnrestrictedSigningKey(t), keyPub, qd)
			a.Att = tpmkey.Attestation{AKPublic: a.Att.AKPublic, KeyPublic: keyPub, CertifyInfo: ci, Signature: sig}
			a.Signer = soft
		}),
		status: http.StatusForbidden, code: ca.CodeBadAttestation,
		msgs: []string{"bad-signature", "does not verify with the AK"},
	},
	{
		name: "genuine TPM2_Certify by an unrestricted key",
		send: spoil(func(t *testing.T, e *tpmEnv, d *testDevice, a *tpmAttempt) {
			key := e.TPM.ExportableKey(t)
			qd := attest.QualifyingData([]byte(a.Nonce), d.WGPub[:])
			ci, sig := e.TPM.Certify(t, key, e.TPM.UnrestrictedSigningKey(t), qd)
			a.Att = tpmkey.Attestation{AKPublic: a.Att.AKPublic, KeyPublic: key.Public, CertifyInfo: ci, Signature: sig}
			a.Signer = softwareKey(t)
		}),
		status: http.StatusForbidden, code: ca.CodeBadAttestation,
		msgs: []string{"bad-signature", "does not verify with the AK"},
	},
	{
		name: "certification by another AK of the same TPM",
		send: spoil(func(t *testing.T, e *tpmEnv, d *testDevice, a *tpmAttempt) {
			dk, err := e.TPM.Other(t).CreateDeviceKey(t.Context(), attest.QualifyingData([]byte(a.Nonce), d.WGPub[:]))
			if err != nil {
				t.Fatal(err)
			}
			a.Att, a.Signer = dk.Attestation, dk.Signer
		}),
		status: http.StatusForbidden, code: ca.CodeBadAttestation,
		msgs: []string{"bad-signature", "does not verify with the AK"},
	},
	{
		name: "PCR quote instead of a key certification",
		send: spoil(func(t *testing.T, e *tpmEnv, d *testDevice, a *tpmAttempt) {
			a.Att.CertifyInfo, a.Att.Signature = e.TPM.QuoteWithAK(t, attest.QualifyingData([]byte(a.Nonce), d.WGPub[:]))
		}),
		status: http.StatusForbidden, code: ca.CodeBadAttestation,
		msgs: []string{"wrong-attestation-type", "TPM_ST_ATTEST_CERTIFY"},
	},

	// Credential activation.
	{
		name: "wrong activation secret",
		send: spoil(func(t *testing.T, e *tpmEnv, d *testDevice, a *tpmAttempt) {
			a.Secret = bytes.Clone(a.Secret)
			a.Secret[0] ^= 0x80
		}),
		status: http.StatusForbidden, code: ca.CodeBadAttestation,
		msgs: []string{"activation-failed", "not the one encrypted to the EK"},
	},
	{
		name: "no activation secret",
		send: spoil(func(t *testing.T, e *tpmEnv, d *testDevice, a *tpmAttempt) {
			a.Secret = nil
		}),
		status: http.StatusForbidden, code: ca.CodeBadAttestation,
		msgs: []string{"activation-failed"},
	},
	{
		name: "activation secret of another challenge",
		send: spoil(func(t *testing.T, e *tpmEnv, d *testDevice, a *tpmAttempt) {
			other := e.Begin(t)
			a.Secret = other.Secret
		}),
		status: http.StatusForbidden, code: ca.CodeBadAttestation,
		msgs: []string{"activation-failed", "not the one encrypted to the EK"},
	},

	// The device key's certification.
	{
		name: "replay: certification over an older nonce",
		send: func(t *testing.T, e *tpmEnv, d *testDevice, token string) (int, []byte) {
			older := e.Nonce(t)
			a := e.Begin(t)
			e.CertifyOver(t, a, attest.QualifyingData([]byte(older), d.WGPub[:]))
			return e.Send(t, d, token, a)
		},
		status: http.StatusForbidden, code: ca.CodeBadAttestation,
		msgs: []string{"qualifying-data-mismatch", "replayed"},
	},
	{
		name: "certification over another WireGuard key",
		send: spoil(func(t *testing.T, e *tpmEnv, d *testDevice, a *tpmAttempt) {
			pub, _, err := x25519.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			e.CertifyOver(t, a, attest.QualifyingData([]byte(a.Nonce), pub))
		}),
		status: http.StatusForbidden, code: ca.CodeBadAttestation,
		msgs: []string{"qualifying-data-mismatch", "WireGuard key"},
	},
	{
		name: "exportable device key",
		send: spoil(func(t *testing.T, e *tpmEnv, d *testDevice, a *tpmAttempt) {
			a.Att = e.TPM.ExportableDeviceKey(t, attest.QualifyingData([]byte(a.Nonce), d.WGPub[:]))
			a.Signer = softwareKey(t) // the exportable key is not loaded to sign
		}),
		status: http.StatusForbidden, code: ca.CodeBadAttestation,
		msgs: []string{"key-exportable", "fixedTPM", "fixedParent"},
	},
	{
		name: "certified key swapped for a software key's public area",
		send: spoil(func(t *testing.T, e *tpmEnv, d *testDevice, a *tpmAttempt) {
			soft := softwareKey(t)
			a.Att.KeyPublic = tpmtest.SoftwareKeyPublic(t, &soft.PublicKey)
			a.Signer = soft
		}),
		status: http.StatusForbidden, code: ca.CodeBadAttestation,
		msgs: []string{"name-mismatch", "the key presented"},
	},
	{
		name: "CSR signed by a software key, not the certified one",
		send: spoil(func(t *testing.T, e *tpmEnv, d *testDevice, a *tpmAttempt) {
			a.Signer = softwareKey(t)
		}),
		status: http.StatusForbidden, code: ca.CodeBadAttestation,
		msgs: []string{"CSR is not signed by the TPM-certified device key"},
	},

	// The TPM session.
	{
		name: "unknown TPM session",
		send: spoil(func(t *testing.T, e *tpmEnv, d *testDevice, a *tpmAttempt) {
			a.Challenge.Session = "made-up-session"
		}),
		status: http.StatusForbidden, code: ca.CodeBadAttestation,
		msgs: []string{"unknown or used TPM session"},
	},
	{
		// A refused attempt spends its session: correcting the evidence
		// does not make the same session good again.
		name: "TPM session used twice",
		send: func(t *testing.T, e *tpmEnv, d *testDevice, token string) (int, []byte) {
			a := e.Attempt(t, d)
			good := a.Secret
			a.Secret = bytes.Clone(good)
			a.Secret[0] ^= 1
			st, body := e.Send(t, d, token, a)
			wantRefusal(t, st, body, http.StatusForbidden, ca.CodeBadAttestation, "activation-failed")
			a.Secret, a.Nonce = good, e.Nonce(t)
			e.Certify(t, a, d)
			return e.Send(t, d, token, a)
		},
		status: http.StatusForbidden, code: ca.CodeBadAttestation,
		msgs: []string{"unknown or used TPM session"},
	},
	{
		name: "expired TPM session",
		send: func(t *testing.T, e *tpmEnv, d *testDevice, token string) (int, []byte) {
			a := e.Begin(t)
			e.Clock.Set(ca.TPMChallengeTTL + time.Minute)
			a.Nonce = e.Nonce(t) // a fresh nonce: only the session is stale
			e.Certify(t, a, d)
			return e.Send(t, d, token, a)
		},
		status: http.StatusForbidden, code: ca.CodeBadAttestation,
		msgs: []string{"TPM challenge expired"},
	},

	// The token still counts for an EK that is only genuine.
	{
		name: "genuine TPM without a token",
		send: func(t *testing.T, e *tpmEnv, d *testDevice, _ string) (int, []byte) {
			return e.Send(t, d, "", e.Attempt(t, d))
		},
		status: http.StatusForbidden, code: ca.CodeBadToken,
		msgs: []string{"enrollment token is missing"},
		// With approval required, EnrollFrom passes the empty token to
		// queue, which redeems a token only when one is given
		// (approval.go: `if token != ""`), so a request without a token
		// — TPM level with an EK that is only genuine, and token level
		// too — is queued for the admin instead of refused.
	},
}
