package certs_test

import (
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/testca"
)

// A verifier whose clock is behind the CA's sees fresh certificates as
// issued in its future. VerifyWith's NotBeforeSkew accepts that, up to the
// skew, and never accepts a certificate past its NotAfter.
func TestVerifyNotBeforeSkew(t *testing.T) {
	ca := testca.New(t, td)
	now := time.Now()
	issue := func(opts ...testca.Option) certs.Bundle {
		b, _ := ca.IssueMachine(t, ca.NewProfile(t, "peer"), opts...)
		return b
	}
	fresh := issue(testca.WithValidity(now.Add(4*time.Minute), now.Add(24*time.Hour)))     // this clock is 4m behind
	farAhead := issue(testca.WithValidity(now.Add(30*time.Minute), now.Add(24*time.Hour))) // 30m behind
	expired := issue(testca.WithValidity(now.Add(-24*time.Hour), now.Add(-time.Second)))
	younger := ca.IssueIntermediate(t, testca.WithValidity(now.Add(2*time.Minute), now.Add(time.Hour)))
	// A leaf valid now, expiring before its intermediate's NotBefore
	// (within the skew): the chain is checked at that NotBefore, where the
	// leaf has expired. Early refusal, never late acceptance.
	early := issue(testca.WithIssuer(younger), testca.WithValidity(now.Add(-time.Hour), now.Add(time.Minute)))
	viaYounger := issue(testca.WithIssuer(younger), testca.WithValidity(now.Add(-time.Hour), now.Add(time.Hour)))
	withUser := ca.IssueUser(t, issue(), testca.WithValidity(now.Add(4*time.Minute), now.Add(time.Hour)))

	skew := func(d time.Duration) certs.VerifyOptions { return certs.VerifyOptions{Now: now, NotBeforeSkew: d} }
	tests := []struct {
		name string
		b    certs.Bundle
		opts certs.VerifyOptions
		want certs.Reason // "" accepted
	}{
		{"4m in the future, strict", fresh, skew(0), certs.ReasonNotYetValid},
		{"4m in the future, 5m tolerated", fresh, skew(5 * time.Minute), ""},
		{"4m in the future, 3m tolerated", fresh, skew(3 * time.Minute), certs.ReasonNotYetValid},
		{"30m in the future, 5m tolerated", farAhead, skew(5 * time.Minute), certs.ReasonNotYetValid},
		{"expired, 5m tolerated", expired, skew(5 * time.Minute), certs.ReasonExpired},
		{"expires before its intermediate's NotBefore", early, skew(5 * time.Minute), certs.ReasonExpired},
		{"intermediate 2m in the future, strict", viaYounger, skew(0), certs.ReasonNotYetValid},
		{"intermediate 2m in the future, 5m tolerated", viaYounger, skew(5 * time.Minute), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := certs.VerifyWith(tt.b, ca.Roots(), nil, tt.opts)
			if got := certs.ReasonOf(err); got != tt.want {
				t.Fatalf("VerifyWith: %v, want reason %q", err, tt.want)
			}
			if tt.want == certs.ReasonNotYetValid && tt.b.Machine.NotBefore.After(now) && !strings.Contains(err.Error(), "after this machine's clock") {
				t.Errorf("the refusal does not say the certificate is ahead of this clock: %v", err)
			}
		})
	}
	t.Run("user certificate 4m in the future", func(t *testing.T) {
		id, err := certs.VerifyWith(withUser, ca.Roots(), nil, skew(0))
		if err != nil || id.User != nil || certs.ReasonOf(id.UserRejected) != certs.ReasonUserNotYetValid {
			t.Fatalf("strict: user %+v, refused %v, err %v", id.User, id.UserRejected, err)
		}
		id, err = certs.VerifyWith(withUser, ca.Roots(), nil, skew(5*time.Minute))
		if err != nil || id.User == nil {
			t.Fatalf("5m tolerated: user %+v, refused %v, err %v", id.User, id.UserRejected, err)
		}
	})
	t.Run("Verify is strict", func(t *testing.T) {
		if _, err := certs.Verify(fresh, ca.Roots(), nil, now); certs.ReasonOf(err) != certs.ReasonNotYetValid {
			t.Fatalf("Verify: %v, want not-yet-valid", err)
		}
	})
	t.Run("invalid options", func(t *testing.T) {
		for _, o := range []certs.VerifyOptions{{}, skew(-time.Second), skew(certs.MaxNotBeforeSkew + time.Second)} {
			_, err := certs.VerifyWith(issue(), ca.Roots(), nil, o)
			if err == nil || certs.ReasonOf(err) != "" {
				t.Errorf("options %+v: %v, want a plain error", o, err)
			}
		}
	})
}
