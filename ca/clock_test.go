package ca_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
)

// Certificates start cert_backdate before their issuance (default 5m), cut
// to half of a short certificate's life, so that agents whose clocks are
// behind the CA's accept them and still renew after issuance.
func TestCertBackdate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		backdate time.Duration // 0: default
		life     time.Duration
		want     time.Duration
	}{
		{"default", 0, 24 * time.Hour, ca.DefaultCertBackdate},
		{"configured", 20 * time.Minute, 24 * time.Hour, 20 * time.Minute},
		{"cut to half a short life", 0, 4 * time.Minute, 2 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := serve(t, openTestCAWith(t, func(c *ca.Config) {
				c.CertBackdate, c.MachineCertLifetime = ca.Duration(tc.backdate), ca.Duration(tc.life)
			}))
			before := e.Clock.Now()
			d := newTestDevice(t, "laptop")
			e.Enroll(t, d, e.Token(t))
			b, err := certs.ParseBundle(d.Resp.Bundle)
			if err != nil {
				t.Fatal(err)
			}
			nb := b.Machine.NotBefore
			if lo, hi := before.Add(-tc.want-time.Second), e.Clock.Now().Add(-tc.want); nb.Before(lo) || nb.After(hi) {
				t.Errorf("NotBefore %s: want %s before issuance (%s..%s)", nb, tc.want, lo, hi)
			}
		})
	}
	e := openTestCA(t)
	for _, bad := range []time.Duration{30 * time.Second, 2 * time.Hour} {
		cfg := *e.CA.Config()
		cfg.CertBackdate = ca.Duration(bad)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "cert_backdate") {
			t.Errorf("cert_backdate %s: %v, want refused", bad, err)
		}
	}
}

// Every answer carries the CA's clock in its Date header: agents measure
// their skew against it.
func TestDateHeaderIsTheCAsClock(t *testing.T) {
	e := newTestEnv(t)
	e.Clock.Set(-30 * time.Minute)
	resp, err := e.Client(t).Get(e.Srv.URL + "/v1/ca/roots")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		t.Fatalf("Date %q: %v", resp.Header.Get("Date"), err)
	}
	if d := e.Clock.Now().Sub(date); d < 0 || d > 5*time.Second {
		t.Errorf("Date %s is %s off the CA's clock %s", date, d, e.Clock.Now())
	}
}
