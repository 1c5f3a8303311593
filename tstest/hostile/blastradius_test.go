package hostile_test

// The blast-radius table of ARCHITECTURE.md ("Blast radius (what each
// compromise buys an attacker)") as a test suite. For each row, the
// component compromised, every cell of the "cannot" column is attempted
// against the real code path (a real CA, real agents in userspace mode, the
// hostile coordinator, the CA's own keys where the row grants them) and
// must fail where it counts: no peer added, no packet delivered, no
// identity or key swapped, no address moved, no policy widened or rolled
// back, no revocation outliving the certificate, no history rewritten
// unnoticed, no certificate for another device. Subtests are named after
// the rows and cells:
//
//	TestBlastRadius/coordinator/cannot-add-a-node
//	TestBlastRadius/coordinator/cannot-swap-a-key
//	TestBlastRadius/coordinator/cannot-move-an-IP
//	TestBlastRadius/coordinator/cannot-make-a-name-resolve-to-an-address-the-CA-did-not-certify
//	TestBlastRadius/coordinator/cannot-widen-a-policy
//	TestBlastRadius/coordinator/cannot-replay-an-old-policy
//	TestBlastRadius/coordinator/cannot-hide-a-revocation-beyond-certificate-expiry
//	TestBlastRadius/coordinator/cannot-replay-an-old-policy-to-a-fresh-agent
//	TestBlastRadius/coordinator/cannot-hide-a-revocation-beyond-the-CA-fetch-interval
//	TestBlastRadius/coordinator/cannot-hide-a-revocation-past-nextUpdate-when-the-CA-is-unreachable
//	TestBlastRadius/IdP/can-log-in-as-any-user-on-an-enrolled-device (positive control)
//	TestBlastRadius/IdP/cannot-enroll-a-device
//	TestBlastRadius/IdP/cannot-enroll-a-TPM-attested-device
//	TestBlastRadius/IdP/cannot-act-outside-name-constraints
//	TestBlastRadius/online-intermediate/cannot-issue-outside-the-trust-domain-or-overlay-range
//	TestBlastRadius/online-intermediate/every-certificate-it-issues-must-be-in-the-log
//	TestBlastRadius/online-intermediate/cannot-erase-its-tracks-from-the-log
//	TestBlastRadius/one-device/cannot-act-as-another-device
//
// Each subtest has a positive control in the same fixture (the legitimate
// peer or a legitimately issued bundle gets through, a published policy
// takes effect, a real login or enrollment succeeds), so that a harness
// unable to see a success cannot pass. The deeper suites for each cell are
// in attack_test.go, policy_test.go, crl_test.go, lifecycle_test.go,
// user_test.go and log_test.go; these are their compact, row-by-row form.

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"testing"

	"go.step.sm/crypto/x25519"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/internal/wire"
)

func TestBlastRadius(t *testing.T) {
	t.Parallel()
	t.Run("coordinator", func(t *testing.T) {
		t.Parallel()
		t.Run("cannot-add-a-node", brCoordinatorAddNode)
		t.Run("cannot-swap-a-key", brCoordinatorSwapKey)
		t.Run("cannot-move-an-IP", brCoordinatorMoveIP)
		t.Run("cannot-make-a-name-resolve-to-an-address-the-CA-did-not-certify", brCoordinatorForgeName) // blastradius_names_test.go
		t.Run("cannot-widen-a-policy", brCoordinatorWidenPolicy)
		t.Run("cannot-replay-an-old-policy", brCoordinatorReplayPolicy)
		t.Run("cannot-hide-a-revocation-beyond-certificate-expiry", brCoordinatorHideRevocation)
		t.Run("cannot-replay-an-old-policy-to-a-fresh-agent", policyFreshAgentGetsCurrent)           // freshness_test.go
		t.Run("cannot-hide-a-revocation-beyond-the-CA-fetch-interval", crlFetchedDespiteCoordinator) // crlfetch_test.go
		t.Run("cannot-hide-a-revocation-past-nextUpdate-when-the-CA-is-unreachable", crlWithheldCAUnreachable)
	})
	t.Run("IdP", brIdP)
	t.Run("online-intermediate", func(t *testing.T) {
		t.Parallel()
		t.Run("cannot-issue-outside-the-trust-domain-or-overlay-range", brIntermediateOutside)
		t.Run("every-certificate-it-issues-must-be-in-the-log", brIntermediateUnlogged)
		t.Run("cannot-erase-its-tracks-from-the-log", brIntermediateErase)
	})
	t.Run("one-device", func(t *testing.T) {
		t.Parallel()
		t.Run("cannot-act-as-another-device", brDeviceActAsAnother)
	})
}

// ---- shared by more than one row: brProofs (IdP, one device) and
// brConnectLogged (IdP, online intermediate).

// brProofs is a CSR signed by the device key, a fresh nonce from the CA
// and the XEdDSA proof of possession of wg over both.
func brProofs(t *testing.T, f *fixture, device crypto.Signer, wg wgdev.PrivateKey) (csrDER []byte, nonce string, proof []byte) {
	t.Helper()
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, device)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	n, err := f.CA.NewNonce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	proof, err = x25519.Sign(rand.Reader, x25519.PrivateKey(wg[:]), wire.ProofMessage(n.Nonce, csr.RawSubjectPublicKeyInfo))
	if err != nil {
		t.Fatal(err)
	}
	return csrDER, n.Nonce, proof
}

// brConnectLogged introduces the victim and the peer to each other with
// their inclusion proofs, as an honest coordinator does, and checks that
// the peer's traffic reaches the victim.
func brConnectLogged(t *testing.T, f *logFixture) {
	t.Helper()
	v, p := f.Victim, f.Peer
	f.Coord.SetSnapshot(v.Self.DeviceID, f.loggedPeer(p))
	f.Coord.SetSnapshot(p.Self.DeviceID, f.loggedPeer(v))
	send(t, v.Conn, upsert(f.loggedPeer(p)))
	waitStatus(t, v, "the peer to be verified", func(st *agent.Status) bool { _, ok := peerOf(st, p.Self.DeviceID); return ok })
	send(t, p.Conn, upsert(f.loggedPeer(v)))
	waitStatus(t, p, "the victim to be verified", func(st *agent.Status) bool { _, ok := peerOf(st, v.Self.DeviceID); return ok })
	f.peerReaches(t)
}
