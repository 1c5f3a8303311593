//go:build tpmsimulator

package ca_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/wire"
)

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
