package ca_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/wire"
)

// newApprovalEnv is a CA with approval: required, served over HTTPS.
func newApprovalEnv(t *testing.T) *testEnv {
	t.Helper()
	e := openTestCAWith(t, func(c *ca.Config) { c.Approval = ca.ApprovalRequired })
	return serve(t, e)
}

func (e *testEnv) requestEnrollment(t *testing.T, d *testDevice, token string) *wire.Pending {
	t.Helper()
	st, body := e.Post(t, e.Client(t), wire.PathEnroll, d.EnrollRequest(t, token, e.Nonce(t)))
	if st != http.StatusAccepted {
		t.Fatalf("enroll: %d %s, want 202 Accepted", st, body)
	}
	var resp wire.CertificateResponse
	if err := json.Unmarshal(body, &resp); err != nil || resp.Pending == nil || resp.Bundle.Machine != nil {
		t.Fatalf("pending answer %s (%v)", body, err)
	}
	return resp.Pending
}

func (e *testEnv) pollEnrollment(t *testing.T, p *wire.Pending) (int, []byte) {
	t.Helper()
	return e.Post(t, e.Client(t), wire.PathEnrollPoll, wire.EnrollPollRequest{ID: p.ID, Secret: p.Secret})
}

func TestApprovalApproved(t *testing.T) {
	e := newApprovalEnv(t)
	d := newTestDevice(t, "new-laptop")
	tok := e.Token(t, "laptop")
	p := e.requestEnrollment(t, d, tok)
	if devs := e.Devices(t); len(devs) != 0 {
		t.Fatalf("a device was created before approval: %+v", devs)
	}
	if st, _ := e.pollEnrollment(t, p); st != http.StatusAccepted {
		t.Fatalf("poll before approval: %d", st)
	}
	// What the admin sees.
	ps, err := e.CA.Pending(t.Context())
	if err != nil || len(ps) != 1 {
		t.Fatalf("pending: %+v %v", ps, err)
	}
	q := ps[0]
	if q.Hostname != "new-laptop" || q.RemoteAddr == "" || q.TokenID == "" || q.RequestedAt.IsZero() ||
		q.Attestation != certs.AttestationToken || q.State != store.PendingWaiting {
		t.Fatalf("pending record lacks facts: %+v", q)
	}
	// The token is spent by the request.
	st, body := e.Post(t, e.Client(t), wire.PathEnroll, newTestDevice(t, "other").EnrollRequest(t, tok, e.Nonce(t)))
	wantRefusal(t, st, body, http.StatusForbidden, ca.CodeTokenUsed)

	dev, err := e.CA.Approve(t.Context(), q.ID)
	if err != nil {
		t.Fatal(err)
	}
	st, body = e.pollEnrollment(t, p)
	resp := decodeOK[wire.CertificateResponse](t, st, body)
	id := d.Accept(t, e, resp)
	if id.DeviceID != dev.ID || len(id.Tags) != 1 || id.Tags[0] != "laptop" {
		t.Fatalf("issued %+v for device %s", id, dev.ID)
	}
	if _, err := e.CA.Approve(t.Context(), q.ID); ca.CodeOf(err) != ca.CodeBadRequest {
		t.Fatalf("approving twice: %v", err)
	}
	// A wrong poll secret learns nothing.
	st, body = e.Post(t, e.Client(t), wire.PathEnrollPoll, wire.EnrollPollRequest{ID: p.ID, Secret: "guess"})
	wantRefusal(t, st, body, http.StatusNotFound, ca.CodeNotFound)
}

func TestApprovalDenied(t *testing.T) {
	e := newApprovalEnv(t)
	d := newTestDevice(t, "stranger")
	p := e.requestEnrollment(t, d, e.Token(t))
	ps, _ := e.CA.Pending(t.Context())
	if _, err := e.CA.Deny(t.Context(), ps[0].ID, "not one of ours"); err != nil {
		t.Fatal(err)
	}
	st, body := e.pollEnrollment(t, p)
	wantRefusal(t, st, body, http.StatusForbidden, ca.CodeDenied, "denied", "not one of ours")
	if devs := e.Devices(t); len(devs) != 0 {
		t.Fatalf("a denied enrollment created a device: %+v", devs)
	}
	if _, err := e.CA.Approve(t.Context(), ps[0].ID); err == nil {
		t.Fatal("approved after denial")
	}
}
