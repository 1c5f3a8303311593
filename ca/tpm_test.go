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
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/x25519"

	"github.com/certmesh/certmesh/agent/tpmkey"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/ca/attest"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/tpmtest"
	"github.com/certmesh/certmesh/internal/wire"
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
	clk := &testClock{}
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

// approval reports whether the CA queues enrollments for an admin.
func (e *tpmEnv) approval() bool { return e.CA.Config().Approval == ca.ApprovalRequired }

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

// EnrollTPM runs a correct TPM enrollment of d (through the approval
// queue when the CA has one) and checks that it got a tpm-level
// certificate for the TPM's key naming the EK, with the next address.
func (e *tpmEnv) EnrollTPM(t testing.TB, d *testDevice, token string) certs.Identity {
	t.Helper()
	a := e.Attempt(t, d)
	st, body := e.Send(t, d, token, a)
	if e.approval() {
		body = e.approveTPM(t, st, body, d, token)
		st = http.StatusOK
	}
	resp := decodeOK[wire.CertificateResponse](t, st, body)
	d.Key = a.Signer
	id := d.Accept(t, e.testEnv, resp) // the certificate's key is the TPM key
	if id.Attestation != certs.AttestationTPM || string(id.EK) != e.EK.Fingerprint.String() {
		t.Fatalf("certificate level %q EK %q, want tpm and %s", id.Attestation, id.EK, e.EK.Fingerprint)
	}
	if want := e.ExpectedAddresses(e.nextIndex); !reflect.DeepEqual(id.Addresses, want) {
		t.Fatalf("enrollment got addresses %v, want %v (allocation index %d)", id.Addresses, want, e.nextIndex)
	}
	e.nextIndex++
	dev := deviceByID(t, e.testEnv, id.DeviceID)
	if dev.Attestation != certs.AttestationTPM || dev.EKFP != e.EK.Fingerprint.String() || dev.State != store.DeviceActive {
		t.Fatalf("device record %+v", dev)
	}
	// The TPM still holds that key (after the agent restarts, it signs).
	s, err := e.TPM.DeviceSigner(t.Context())
	if err != nil || !d.Certificate(t).PublicKey.(*ecdsa.PublicKey).Equal(s.Public()) {
		t.Fatalf("the TPM's current device key is not the certified one (%v)", err)
	}
	return id
}

// approveTPM takes the 202 answer of a queued TPM enrollment, checks what
// the admin sees, approves it and returns the poll's answer.
func (e *tpmEnv) approveTPM(t testing.TB, st int, body []byte, d *testDevice, token string) []byte {
	t.Helper()
	if st != http.StatusAccepted {
		t.Fatalf("enroll: %d %s, want 202 Accepted", st, body)
	}
	var resp wire.CertificateResponse
	if err := json.Unmarshal(body, &resp); err != nil || resp.Pending == nil {
		t.Fatalf("pending answer %s (%v)", body, err)
	}
	ps, err := e.CA.Pending(t.Context())
	if err != nil || len(ps) != 1 {
		t.Fatalf("pending: %+v %v", ps, err)
	}
	p := ps[0]
	if p.Hostname != certs.Hostname(d.Hostname) || p.Attestation != certs.AttestationTPM || p.EKFP != e.EK.Fingerprint.String() ||
		p.Manufacturer != e.Vendor || p.RemoteAddr == "" || p.RequestedAt.IsZero() || (token != "") != (p.TokenID != "") ||
		p.State != store.PendingWaiting {
		t.Fatalf("pending record lacks facts: %+v (want EK %s, manufacturer %q)", p, e.EK.Fingerprint, e.Vendor)
	}
	if devs := e.Devices(t); len(devs) != 0 {
		t.Fatalf("a device was created before approval: %+v", devs)
	}
	if _, err := e.CA.Approve(t.Context(), p.ID); err != nil {
		t.Fatalf("Approve: %v", err)
	}
	_, out := e.Post(t, e.Client(t), wire.PathEnrollPoll, wire.EnrollPollRequest{ID: resp.Pending.ID, Secret: resp.Pending.Secret})
	return out
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

func softwareKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestTPMEnrollHappyPath(t *testing.T) {
	e := newTPMEnv(t, nil)
	d := newTestDevice(t, "tpm-laptop")
	id := e.EnrollTPM(t, d, e.Token(t, "laptop"))
	if len(id.Tags) != 1 || id.Tags[0] != "laptop" {
		t.Fatalf("tags %v", id.Tags)
	}
	first := d.Certificate(t)

	// Renewal over mTLS: the TPM key signs the handshake and the CSR; the
	// level and the EK stay.
	st, body := e.Renew(t, d, d.RenewRequest(t, e.Nonce(t)))
	id2 := d.Accept(t, e.testEnv, decodeOK[wire.CertificateResponse](t, st, body))
	if id2.Serial == id.Serial || id2.DeviceID != id.DeviceID {
		t.Fatalf("renewal: serial %s (was %s), device %s (was %s)", id2.Serial, id.Serial, id2.DeviceID, id.DeviceID)
	}
	if id2.Attestation != certs.AttestationTPM || id2.EK != id.EK {
		t.Fatalf("renewed certificate level %q EK %q, want tpm and %s", id2.Attestation, id2.EK, id.EK)
	}
	if !bytes.Equal(d.Certificate(t).RawSubjectPublicKeyInfo, first.RawSubjectPublicKeyInfo) {
		t.Fatal("renewal changed the device key")
	}
	if devs := e.Devices(t); len(devs) != 1 {
		t.Fatalf("devices %+v", devs)
	}
}

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

// TestTPMRefusals sends each bad TPM enrollment over HTTPS, to a CA that
// issues at once and to one that queues for approval, and checks the
// refusal and that it left nothing behind: no device, nothing pending, and
// the same token then enrolls the same TPM correctly, with the first
// address.
func TestTPMRefusals(t *testing.T) {
	for _, mode := range []struct {
		name string
		edit func(*ca.Config)
	}{
		{"direct", nil},
		{"approval", func(c *ca.Config) { c.Approval = ca.ApprovalRequired }},
	} {
		t.Run(mode.name, func(t *testing.T) {
			for _, tc := range tpmRefusals {
				t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
					e := newTPMEnv(t, mode.edit)
					token := e.Token(t)
					d := newTestDevice(t, "tpm-laptop")

					st, body := tc.send(t, e, d, token)
					wantRefusal(t, st, body, tc.status, tc.code, tc.msgs...)
					e.wantNothingRecorded(t)

					e.EnrollTPM(t, d, token)
				})
			}
		})
	}
}

// A session that enrolled a device cannot enroll another, even with a
// fresh nonce, a new certification and a new token; the token it was
// offered stays unspent.
func TestTPMSessionReplayAfterEnrollment(t *testing.T) {
	e := newTPMEnv(t, nil)
	d := newTestDevice(t, "tpm-laptop")
	a := e.Attempt(t, d)
	st, body := e.Send(t, d, e.Token(t), a)
	resp := decodeOK[wire.CertificateResponse](t, st, body)
	d.Key = a.Signer
	first := d.Accept(t, e.testEnv, resp)
	e.nextIndex++

	thief := newTestDevice(t, "second-laptop")
	a.Nonce = e.Nonce(t)
	e.Certify(t, a, thief)
	tok := e.Token(t)
	st, body = e.Send(t, thief, tok, a)
	wantRefusal(t, st, body, http.StatusForbidden, ca.CodeBadAttestation, "unknown or used TPM session")
	devs := e.Devices(t)
	if len(devs) != 1 || devs[0].ID != first.DeviceID || devs[0].State != store.DeviceActive {
		t.Fatalf("devices after the replay: %+v", devs)
	}
	// The token is still good.
	e.Enroll(t, newTestDevice(t, "token-server"), tok)
}

// A malformed challenge request is refused saying what is wrong, and the
// TPM then enrolls with a good one.
func TestTPMChallengeRefusedThenGood(t *testing.T) {
	e := newTPMEnv(t, nil)
	req := e.ChallengeRequest(t)
	req.EKCert = nil
	req.EKPublic = nil
	st, body := e.Challenge(t, req)
	wantRefusal(t, st, body, http.StatusForbidden, ca.CodeBadAttestation, "malformed", "no EK public key or certificate")
	req = e.ChallengeRequest(t)
	req.EKCert = []byte("not DER")
	st, body = e.Challenge(t, req)
	wantRefusal(t, st, body, http.StatusForbidden, ca.CodeBadAttestation, "EK certificate is not DER")
	e.EnrollTPM(t, newTestDevice(t, "tpm-laptop"), e.Token(t))
}
