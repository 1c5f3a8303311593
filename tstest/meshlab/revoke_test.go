package meshlab_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/oidctest"
)

// TestRevokedDeviceCutOff: revoking a device at the CA cuts it off the
// mesh within seconds. Every other agent removes it from its status and
// from its WireGuard device, and holds a current CRL listing it; nothing
// it sends gets through while the others still talk; it cannot renew; it
// cannot enroll again with the token it used; the revocation is in the
// transparency log the agents follow.
func TestRevokedDeviceCutOff(t *testing.T) {
	meshlab.ForEachBackend(t, meshlab.Options{}, func(t *testing.T, lab meshlab.Lab) {
		a := lab.Join(t, "a", meshlab.NodeOptions{})
		b := lab.Join(t, "b", meshlab.NodeOptions{})
		badToken := lab.Token(t)
		bad := lab.Join(t, "bad", meshlab.NodeOptions{Token: badToken})
		meshlab.ServeEcho(t, a, 7000)
		meshlab.ServeEcho(t, b, 7000)
		firstContact(t, route{bad, a, 7000}, route{bad, b, 7000}, route{b, a, 7000})

		// Positive control for the refused renewal below: `certmesh renew`
		// through the local API works before the revocation.
		before := bad.Status(t).Self.CertSerial
		if st, err := bad.LocalAPI().Renew(t.Context()); err != nil || st.CertSerial == before {
			t.Fatalf("renewal through the local API: %+v, %v", st, err)
		}

		start := time.Now()
		lab.RevokeDevice(t, bad)
		meshlab.Eventually(t, 10*time.Second, "every agent to remove the revoked device", func() error {
			var errs []error
			for _, n := range []meshlab.Node{a, b} {
				st := n.Status(t)
				if _, err := meshlab.PeerNamed(st, "bad"); err == nil {
					errs = append(errs, fmt.Errorf("%s still has bad as a peer", n.Hostname()))
				}
				if slices.Contains(n.WireGuardPeers(t), bad.WireGuardKey()) {
					errs = append(errs, fmt.Errorf("%s's WireGuard device still has bad's key", n.Hostname()))
				}
				if st.CRL.Number == "" || st.CRL.Entries < 1 || st.CRL.Stale {
					errs = append(errs, fmt.Errorf("%s holds CRL %+v, want a current one listing bad", n.Hostname(), st.CRL))
				}
			}
			return errors.Join(errs...)
		})
		t.Logf("revocation reached every agent in %s", time.Since(start).Round(time.Millisecond))

		// Nothing from bad gets through, in either direction; the others
		// still talk.
		refused(t, "after the revocation", route{bad, a, 7000}, route{bad, b, 7000})
		if err := (route{b, a, 7000}).reach(t.Context(), 5*time.Second); err != nil {
			t.Errorf("b -> a after the revocation of another device: %v", err)
		}

		// It cannot renew.
		if _, err := bad.LocalAPI().Renew(t.Context()); err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Errorf("renewal of a revoked device: %v, want it refused as revoked", err)
		}
		// Its token is spent: it cannot enroll again with it, even as a
		// new agent with fresh keys.
		if _, err := lab.TryJoin(t, "bad-again", meshlab.NodeOptions{Token: badToken, Wait: 20 * time.Second}); err == nil ||
			!strings.Contains(err.Error(), "already used") {
			t.Errorf("re-enrollment with the revoked device's token: %v, want it refused as already used", err)
		}
		devs := lab.Devices(t)
		if len(devs) != 3 {
			t.Errorf("devices after the re-enrollment attempt: %+v, want the 3 there were", devs)
		}
		if i := slices.IndexFunc(devs, func(d meshlab.Device) bool { return d.ID == bad.DeviceID() }); i < 0 || devs[i].State != "revoked" {
			t.Errorf("devices list after the revocation: %+v, want bad revoked", devs)
		}

		// Every agent followed the transparency log (peers were accepted
		// with inclusion proofs, require_logged being the default) and saw
		// no split view; the revocation is in the log too.
		meshlab.Eventually(t, 5*time.Second, "the agents to follow the log past the revocation", func() error {
			for _, n := range []meshlab.Node{a, b} {
				if st := n.Status(t).Log; !st.RequireLogged || st.Alarm != "" || st.Size < 5 {
					return fmt.Errorf("%s: log status %+v", n.Hostname(), st)
				}
			}
			return nil
		})
	})
}

// TestRevokedUserDropped: revoking a user drops the user identity from
// every peer's view within seconds while the machine stays a peer, and
// the user cannot log in again.
func TestRevokedUserDropped(t *testing.T) {
	meshlab.ForEachBackend(t, meshlab.Options{Users: []oidctest.User{alice}}, func(t *testing.T, lab meshlab.Lab) {
		a := lab.Join(t, "laptop-a", meshlab.NodeOptions{})
		b := lab.Join(t, "laptop-b", meshlab.NodeOptions{})
		if err := lab.Login(t, a, alice); err != nil {
			t.Fatal(err)
		}
		meshlab.Eventually(t, 10*time.Second, "b to see alice on laptop-a", func() error {
			return checkUserPeer(b.Status(t), a, &alice)
		})
		start := time.Now()
		lab.RevokeUser(t, alice.Email)
		meshlab.Eventually(t, 10*time.Second, "b to drop alice but keep the machine", func() error {
			p, err := meshlab.PeerNamed(b.Status(t), "laptop-a")
			if err != nil {
				return fmt.Errorf("the machine must stay a peer: %w", err)
			}
			if p.User != nil || !strings.Contains(p.UserRejected, string(certs.ReasonUserRevoked)) {
				return fmt.Errorf("b sees %q (user rejected %q)", p.Name, p.UserRejected)
			}
			return nil
		})
		t.Logf("b dropped the revoked user after %v", time.Since(start).Round(time.Millisecond))
		if !slices.Contains(b.WireGuardPeers(t), a.WireGuardKey()) {
			t.Error("b's WireGuard device lost laptop-a with its user")
		}
		if err := lab.Login(t, a, alice); err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("a revoked user logging in again: %v, want it refused as revoked", err)
		}
	})
}
