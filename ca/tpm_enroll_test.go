//go:build tpmsimulator

package ca_test

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/wire"
)

// approval reports whether the CA queues enrollments for an admin.
func (e *tpmEnv) approval() bool { return e.CA.Config().Approval == ca.ApprovalRequired }

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
