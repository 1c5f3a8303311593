package ca_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/policy"
)

// get fetches path with If-None-Match: etag (none if "") and returns the
// status, ETag header and body.
func (e *testEnv) get(t *testing.T, path, etag string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.Srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := e.Client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("ETag"), body
}

// TestConditionalDocuments: the CRL and the policy carry the ETag an agent
// computes from the document it holds (wire.ETag); asked with it, the CA
// answers 304 and no body, and the full document once it changed.
func TestConditionalDocuments(t *testing.T) {
	e := newTestEnv(t)
	for _, c := range []struct {
		path    string
		current func() []byte
		change  func() error
	}{
		{wire.PathCRL, e.CA.CRL, func() error { return e.CA.RefreshCRL(context.Background()) }},
		{wire.PathPolicy, e.CA.Policy, func() error {
			e.Clock.Set(time.Minute) // a new signing time
			return e.CA.RefreshPolicy(context.Background())
		}},
	} {
		t.Run(c.path, func(t *testing.T) {
			held := c.current()
			st, etag, body := e.get(t, c.path, "")
			if st != http.StatusOK || string(body) != string(held) || etag != wire.ETag(held) {
				t.Fatalf("unconditional GET: %d, ETag %s (want %s), %d bytes", st, etag, wire.ETag(held), len(body))
			}
			for _, inm := range []string{etag, `"other", ` + etag, "W/" + etag, "*"} {
				if st, _, body := e.get(t, c.path, inm); st != http.StatusNotModified || len(body) != 0 {
					t.Errorf("If-None-Match %s: %d with %d bytes, want 304 and none", inm, st, len(body))
				}
			}
			if st, _, body := e.get(t, c.path, `"other"`); st != http.StatusOK || string(body) != string(held) {
				t.Errorf("If-None-Match of another document: %d, %d bytes", st, len(body))
			}
			if err := c.change(); err != nil {
				t.Fatal(err)
			}
			st, etag2, body := e.get(t, c.path, etag)
			if st != http.StatusOK || string(body) != string(c.current()) || etag2 == etag || etag2 != wire.ETag(body) {
				t.Errorf("after a change, with the old ETag: %d, ETag %s, %d bytes", st, etag2, len(body))
			}
		})
	}
}

// TestPolicyResigned: the CA signs its current version again once past
// half of its validity, same version and source, a later valid-until;
// listeners are told; nothing is re-signed before that.
func TestPolicyResigned(t *testing.T) {
	e := openTestCA(t)
	var relayed [][]byte
	e.CA.OnPolicy(func(doc []byte) { relayed = append(relayed, doc) })
	first := parsePolicy(t, e.CA.Policy())
	if first.ValidUntil.IsZero() || !first.ValidUntil.Equal(first.SignedAt.Add(policy.DefaultValidity)) {
		t.Fatalf("the starter policy is valid until %s, signed at %s: want %s later", first.ValidUntil, first.SignedAt, policy.DefaultValidity)
	}
	e.Clock.Set(policy.DefaultValidity/2 - time.Minute)
	if err := e.CA.RunPolicyOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(relayed) != 0 || string(e.CA.Policy()) != string(first.raw) {
		t.Fatalf("re-signed before half of the validity (%d relayed)", len(relayed))
	}
	e.Clock.Set(policy.DefaultValidity/2 + time.Minute)
	if err := e.CA.RunPolicyOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	next := parsePolicy(t, e.CA.Policy())
	if len(relayed) != 1 || string(relayed[0]) != string(next.raw) {
		t.Fatalf("the re-signing was relayed %d times", len(relayed))
	}
	if !policy.IsResigning(first.SignedPolicy, next.SignedPolicy) {
		t.Fatalf("not a re-signing: version %d→%d, signed %s→%s, valid until %s→%s", first.Version, next.Version,
			first.SignedAt, next.SignedAt, first.ValidUntil, next.ValidUntil)
	}
	if _, err := policy.Verify(next.SignedPolicy, e.CA.Roots(), e.Clock.Now(), 0); err != nil {
		t.Fatalf("the re-signed document: %v", err)
	}
	// Past the first signing's valid-until, only the new one verifies.
	late := first.ValidUntil.Add(time.Second)
	if _, err := policy.Verify(first.SignedPolicy, e.CA.Roots(), late, 0); policy.ReasonOf(err) != policy.ReasonPastValidUntil {
		t.Errorf("the first signing after its valid-until: %v", err)
	}
	if _, err := policy.Verify(next.SignedPolicy, e.CA.Roots(), late, 0); err != nil {
		t.Errorf("the re-signing at the first one's valid-until: %v", err)
	}
	// The admin API shows the new valid-until.
	info, err := e.CA.CurrentPolicy()
	if err != nil || info.Version != first.Version || !info.ValidUntil.Equal(next.ValidUntil) {
		t.Errorf("CurrentPolicy: %+v, %v", info, err)
	}
}

// TestCertificateResponseCarriesPolicy: enrollment and renewal answers hold
// the CA's current signed policy.
func TestCertificateResponseCarriesPolicy(t *testing.T) {
	e := newTestEnv(t)
	d := newTestDevice(t, "laptop")
	st, body := e.Post(t, e.Client(t), wire.PathEnroll, d.EnrollRequest(t, e.Token(t), e.Nonce(t)))
	resp := decodeOK[wire.CertificateResponse](t, st, body)
	d.Accept(t, e, resp)
	if string(resp.Policy) != string(e.CA.Policy()) {
		t.Errorf("enrollment answer's policy: %.80s, want the CA's current", resp.Policy)
	}
	if _, err := e.CA.PublishPolicy(context.Background(), []byte(policy.Starter(testTrustDomain))); err != nil {
		t.Fatal(err)
	}
	st, body = e.Renew(t, d, d.RenewRequest(t, e.Nonce(t)))
	resp = decodeOK[wire.CertificateResponse](t, st, body)
	if got := parsePolicy(t, resp.Policy); got.Version != 2 || string(resp.Policy) != string(e.CA.Policy()) {
		t.Errorf("renewal answer's policy is version %d, want the CA's current, 2", got.Version)
	}
}

type parsedPolicy struct {
	*policy.SignedPolicy
	raw []byte
}

func parsePolicy(t *testing.T, raw []byte) parsedPolicy {
	t.Helper()
	d, err := policy.ParseSignedPolicy(raw)
	if err != nil {
		t.Fatal(err)
	}
	return parsedPolicy{d, raw}
}
