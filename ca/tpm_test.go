//go:build tpmsimulator

package ca_test

// TPM enrollment through the CA's real HTTPS API, with the Microsoft
// reference TPM simulator (build tag tpmsimulator, cgo):
//
//	go test -tags tpmsimulator -run TPM ./ca
//
// The test plays the agent: it reads the EK (the simulator has none
// certified, so a test manufacturer issues the certificate), asks
// wire.PathTPMChallenge, activates the credential in the TPM, has the AK
// certify a new device key over SHA-256(nonce ‖ WireGuard key), and posts
// wire.PathEnroll with the evidence. Each refusal must say what was wrong
// and leave nothing behind: no device, nothing pending, the token and the
// address unspent. One simulator exists per process, so no test here runs
// in parallel and each subtest has its own.

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent/tpmkey"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/ca/attest"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/tpmtest"
)

// tpmEnv is a CA that trusts a test TPM manufacturer, served over HTTPS,
// and a fresh simulator whose EK that manufacturer certified.
type tpmEnv struct {
	*testEnv
	TPM    *tpmtest.TPM
	Mfr    *tpmtest.Manufacturer
	EK     *tpmkey.EK
	EKCert *x509.Certificate
	// Vendor is what the TPM says it is (sent with the challenge).
	Vendor string
}

// newTPMEnv initialises a CA whose config lists the manufacturer's root
// and intermediate as TPM manufacturer roots (edit may change the config
// further before the CA opens), and starts a simulator.
func newTPMEnv(t *testing.T, edit func(*ca.Config)) *tpmEnv {
	t.Helper()
	mfr := tpmtest.NewManufacturer(t)
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := ca.Init(dir, ca.InitOptions{TrustDomain: testTrustDomain}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	roots := filepath.Join(t.TempDir(), "tpm-roots.pem")
	if err := os.WriteFile(roots, certs.EncodePEM(mfr.Root, mfr.Intermediate), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := ca.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.TPM = &ca.TPMConfig{ManufacturerRoots: roots}
	if edit != nil {
		edit(cfg)
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	clk := &testclock.Clock{}
	c, err := ca.Open(dir, ca.Options{Logger: discardLogger(), Now: clk.Now})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	e := &tpmEnv{testEnv: serve(t, &testEnv{Dir: dir, CA: c, Clock: clk, nextIndex: 1}), Mfr: mfr}

	e.TPM = tpmtest.New(t)
	if e.EK, err = e.TPM.EK(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.EKCert = mfr.IssueEKCert(t, e.EK.Public)
	info, err := e.TPM.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	e.Vendor = info.String()
	return e
}

// ChallengeRequest is what the agent sends: the EK public key and its
// certificate, the AK's public area, and the TPM's self-description.
func (e *tpmEnv) ChallengeRequest(t testing.TB) wire.TPMChallengeRequest {
	t.Helper()
	ekPub, err := x509.MarshalPKIXPublicKey(e.EK.Public)
	if err != nil {
		t.Fatal(err)
	}
	akPub, err := e.TPM.AKPublic(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return wire.TPMChallengeRequest{EKPublic: ekPub, EKCert: e.EKCert.Raw, AKPublic: akPub, Manufacturer: e.Vendor}
}

// Challenge posts req to wire.PathTPMChallenge and returns the answer.
func (e *tpmEnv) Challenge(t testing.TB, req wire.TPMChallengeRequest) (int, []byte) {
	t.Helper()
	return e.Post(t, e.Client(t), wire.PathTPMChallenge, req)
}

// tpmAttempt is one TPM enrollment as an agent builds it; a test spoils a
// piece of it before it is sent.
type tpmAttempt struct {
	Nonce     string
	Challenge wire.TPMChallengeResponse
	// Secret is what the TPM recovered from the challenge.
	Secret []byte
	// Att is the AK's certification of the device key.
	Att tpmkey.Attestation
	// Signer signs the CSR (the TPM device key).
	Signer crypto.Signer
}

// Begin gets a nonce and a challenge for the TPM's EK and AK, and
// activates the credential in the TPM.
func (e *tpmEnv) Begin(t testing.TB) *tpmAttempt {
	t.Helper()
	a := &tpmAttempt{Nonce: e.Nonce(t)}
	st, body := e.Challenge(t, e.ChallengeRequest(t))
	a.Challenge = decodeOK[wire.TPMChallengeResponse](t, st, body)
	if a.Challenge.Session == "" || len(a.Challenge.Credential) == 0 || len(a.Challenge.Secret) == 0 {
		t.Fatalf("challenge %+v", a.Challenge)
	}
	if exp := e.Clock.Now().Add(ca.TPMChallengeTTL); a.Challenge.Expires.After(exp) || a.Challenge.Expires.Before(exp.Add(-time.Minute)) {
		t.Fatalf("challenge expires at %s, want about %s", a.Challenge.Expires, exp)
	}
	var err error
	if a.Secret, err = e.TPM.ActivateCredential(t.Context(), a.Challenge.Credential, a.Challenge.Secret); err != nil {
		t.Fatalf("activating the CA's credential: %v", err)
	}
	return a
}

// CertifyOver creates a new device key in the TPM, certified by the AK
// over qd, and makes it the attempt's CSR signer.
func (e *tpmEnv) CertifyOver(t testing.TB, a *tpmAttempt, qd []byte) {
	t.Helper()
	dk, err := e.TPM.CreateDeviceKey(t.Context(), qd)
	if err != nil {
		t.Fatalf("creating the device key: %v", err)
	}
	a.Att, a.Signer = dk.Attestation, dk.Signer
}

// Certify is CertifyOver the right qualifying data for d and a's nonce.
func (e *tpmEnv) Certify(t testing.TB, a *tpmAttempt, d *testDevice) {
	t.Helper()
	e.CertifyOver(t, a, attest.QualifyingData([]byte(a.Nonce), d.WGPub[:]))
}

// Attempt is a complete, correct attempt for d.
func (e *tpmEnv) Attempt(t testing.TB, d *testDevice) *tpmAttempt {
	t.Helper()
	a := e.Begin(t)
	e.Certify(t, a, d)
	return a
}

// Request is the enrollment request for a: a CSR signed by a.Signer, d's
// proof of its WireGuard key over a's nonce, and the TPM evidence.
func (e *tpmEnv) Request(t testing.TB, d *testDevice, token string, a *tpmAttempt) wire.EnrollRequest {
	t.Helper()
	csr := csrFor(t, a.Signer, nil)
	return wire.EnrollRequest{
		Token: token, Hostname: d.Hostname, CSR: csr, WireGuardKey: d.WGPub, Nonce: a.Nonce, Proof: d.Proof(t, a.Nonce, csr),
		TPM: &wire.TPMEvidence{
			Session: a.Challenge.Session, ActivatedSecret: a.Secret,
			KeyPublic: a.Att.KeyPublic, CertifyInfo: a.Att.CertifyInfo, Signature: a.Att.Signature,
		},
	}
}

// Send posts a's enrollment request.
func (e *tpmEnv) Send(t testing.TB, d *testDevice, token string, a *tpmAttempt) (int, []byte) {
	t.Helper()
	return e.Post(t, e.Client(t), wire.PathEnroll, e.Request(t, d, token, a))
}

// wantNothingRecorded checks that a refused enrollment left no device and
// nothing waiting for approval.
func (e *tpmEnv) wantNothingRecorded(t testing.TB) {
	t.Helper()
	if devs := e.Devices(t); len(devs) != 0 {
		t.Fatalf("a refused TPM enrollment recorded devices: %+v", devs)
	}
	ps, err := e.CA.Pending(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 0 {
		t.Fatalf("a refused TPM enrollment left pending requests: %+v", ps)
	}
}
