package agent

import (
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/policy"
	"github.com/certmesh/certmesh/tstest/testca"
)

// TestPipelineSweepsOnTheClock: the agent's periodic sweep, on its
// injected clock moved 13 hours on (no waiting for an expiry), takes the
// peer whose certificate expired out of the device, drops and unpublishes
// the user certificate (12 hours) and reports the policy (valid an hour)
// and the CRL (next update in an hour) stale, while the peer still valid
// stays configured.
func TestPipelineSweepsOnTheClock(t *testing.T) {
	r, d := newEnrollRig(t)
	clk := &testclock.Clock{}
	r.cfg.Now, r.cfg.SweepInterval = clk.Now, 10*time.Millisecond
	now := time.Now()
	kp, err := policy.NewPolicySigningCertificate(r.pki.Root(), testTD, now)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := policy.SignValidFor(1, []byte(webToDB), kp.Key, []*x509.Certificate{kp.Cert}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	d.set(func(d *caDouble) {
		d.policy, _ = sp.Marshal()
		d.crl = r.pki.IssueCRL(t, 1, now.Add(-time.Minute), now.Add(time.Hour))
	})
	r.start(t)
	c := NewClient(r.dir)
	st, err := c.Login(t.Context(), LoginRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AwaitLogin(t.Context(), st, nil); err != nil {
		t.Fatal(err)
	}
	alice, bob := r.pki.NewProfile(t, "alice"), r.pki.NewProfile(t, "bob")
	pa := r.peer(t, "a", alice, 7001)
	pb := r.peer(t, "b", bob, 7002, testca.WithValidity(now.Add(-time.Minute), now.Add(2*time.Hour)))
	pa.Inclusion, pb.Inclusion = d.log.add(t, pa.Bundle.Machine), d.log.add(t, pb.Bundle.Machine)
	r.send(t, &wire.Event{Type: wire.EventSnapshot, Peers: []wire.Peer{pa, pb}})
	ka, da := want(alice, 7001)
	kb, db := want(bob, 7002)
	r.waitDevice(t, map[certs.WireGuardKey]devPeer{ka: da, kb: db})
	r.eventually(t, "policy and CRL from the CA", func() error {
		if st := r.status(t); st.Policy.Version != 1 || st.CRL.Number != "1" || st.Self.User == nil || st.Policy.Stale || st.CRL.Stale {
			return fmt.Errorf("policy %+v, crl %+v, user %+v", st.Policy, st.CRL, st.Self.User)
		}
		return nil
	})

	n := r.published()
	clk.Advance(13 * time.Hour)
	r.waitDevice(t, map[certs.WireGuardKey]devPeer{ka: da})
	r.eventually(t, "the sweep's verdicts in status", func() error {
		st := r.status(t)
		if st.Self.User != nil || !st.Policy.Stale || !st.CRL.Stale || rejected(st, "b") != certs.ReasonExpired {
			return fmt.Errorf("user %+v, policy stale %v, crl stale %v, bob refused as %q", st.Self.User, st.Policy.Stale, st.CRL.Stale, rejected(st, "b"))
		}
		return nil
	})
	r.waitPublished(t, n, func(p wire.Publish) bool { return p.Bundle.User == nil })
}
