package testmesh_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/testmesh"
)

func TestRevokedDeviceCutOff(t *testing.T) {
	m := testmesh.New(t, testmesh.Options{})
	a := m.AddNode(t, "a", testmesh.NodeOptions{})
	b := m.AddNode(t, "b", testmesh.NodeOptions{})
	bad := m.AddNode(t, "bad", testmesh.NodeOptions{})
	serve(t, a, 7000)
	testmesh.Eventually(t, 15*time.Second, "bad to reach a", func() error { return reach(bad, a.V4(), 7000, 2*time.Second) })

	// `certmesh renew` through the local API works before the revocation.
	before := bad.Status(t).Self.CertSerial
	if st, err := bad.Client.Renew(t.Context()); err != nil || st.CertSerial == before {
		t.Fatalf("renewal through the local API: %+v, %v", st, err)
	}
	start := time.Now()
	dev, err := m.Server.CA.Revoke(t.Context(), bad.Status(t).Self.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	testmesh.Eventually(t, 10*time.Second, "every agent to remove the revoked device", func() error {
		for _, n := range []*testmesh.Node{a, b} {
			st := n.Status(t)
			if _, err := peerNamed(st, "bad"); err == nil {
				return fmt.Errorf("%s still has bad as a peer", n.Name)
			}
			if st.CRL.Number == "" {
				return fmt.Errorf("%s holds no CRL", n.Name)
			}
			stats, err := n.Agent.Device().Peers()
			if err != nil {
				return err
			}
			for _, s := range stats {
				if s.PublicKey == dev.WireGuardKey {
					return fmt.Errorf("%s still has bad's WireGuard key", n.Name)
				}
			}
		}
		return nil
	})
	t.Logf("revocation reached every agent in %s", time.Since(start).Round(time.Millisecond))
	if err := reach(bad, a.V4(), 7000, 2*time.Second); err == nil {
		t.Fatal("the revoked device still reaches a")
	}
	// It cannot renew.
	if _, err := bad.Client.Renew(t.Context()); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("renewal of a revoked device: %v", err)
	}
	// Its token is spent: it cannot enroll again with it.
	if _, err := m.StartNode(t, "bad-again", testmesh.NodeOptions{Token: bad.Token, Wait: 5 * time.Second}); err == nil ||
		!strings.Contains(err.Error(), "already used") {
		t.Fatalf("re-enrollment with the revoked device's token: %v", err)
	}
	// Every agent holds a CRL listing it (a coordinator relaying its
	// bundle again gets nowhere: tstest/hostile tries).
	for _, n := range []*testmesh.Node{a, b} {
		if st := n.Status(t); st.CRL.Entries < 1 || st.CRL.Stale {
			t.Fatalf("%s holds CRL %+v, want one listing the revoked device", n.Name, st.CRL)
		}
	}
	// Every agent followed the transparency log (peers were accepted with
	// inclusion proofs, require_logged being the default) and saw no
	// split view; the revocation is in the log too.
	testmesh.Eventually(t, 5*time.Second, "the agents to follow the log past the revocation", func() error {
		for _, n := range []*testmesh.Node{a, b} {
			st := n.Status(t).Log
			if !st.RequireLogged || st.Alarm != "" || st.Size < 5 {
				return fmt.Errorf("%s: log status %+v", n.Name, st)
			}
		}
		return nil
	})
}

func TestRevokedUserDropped(t *testing.T) {
	m, idp := ssoMesh(t)
	a := m.AddNode(t, "laptop-a", testmesh.NodeOptions{})
	b := m.AddNode(t, "laptop-b", testmesh.NodeOptions{})
	login(t, m, idp, a, alice)
	waitUserSeen(t, b, "laptop-a")
	if _, err := m.Server.CA.RevokeUser(t.Context(), "alice@corp.example"); err != nil {
		t.Fatal(err)
	}
	testmesh.Eventually(t, 10*time.Second, "b to drop alice but keep the machine", func() error {
		p, err := peerNamed(b.Status(t), "laptop-a")
		if err != nil {
			return err
		}
		if p.User != nil || !strings.Contains(p.UserRejected, string(certs.ReasonUserRevoked)) {
			return fmt.Errorf("b sees %q (rejected %q)", p.Name, p.UserRejected)
		}
		return nil
	})
	// alice cannot log in again.
	st, err := a.Client.Login(t.Context(), agent.LoginRequest{})
	if err != nil {
		t.Fatal(err)
	}
	redirect, err := idp.Login(t.Context(), st.AuthURL, alice.Email, alice.Password)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := m.Browser().Get(redirect.String()); err == nil {
		resp.Body.Close()
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		ls, _ := a.Client.LoginStatus(ctx)
		if ls.Status == "failed" {
			if !strings.Contains(ls.Message, "revoked") {
				t.Fatalf("login refused without saying why: %s", ls.Message)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("a revoked user logged in again")
}
