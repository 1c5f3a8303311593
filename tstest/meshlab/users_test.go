package meshlab_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/oidctest"
)

// checkUserPeer checks that st shows node p with user u logged in.
func checkUserPeer(st *agent.Status, p meshlab.Node, u *oidctest.User) error {
	ps, err := meshlab.PeerNamed(st, p.Hostname())
	if err != nil {
		return err
	}
	want := u.Email + " on " + p.Hostname()
	var groups []string
	if ps.User != nil {
		for _, g := range ps.User.Groups {
			groups = append(groups, string(g))
		}
	}
	if ps.Name != want || ps.User == nil || string(ps.User.Email) != u.Email || !slices.Equal(groups, u.Groups) {
		return fmt.Errorf("%s sees %s as %q (user %+v, rejected %q), want %q in groups %v",
			st.Self.Hostname, p.Hostname(), ps.Name, ps.User, ps.UserRejected, want, u.Groups)
	}
	return nil
}

// TestUsersSeeEachOther: two agents log in as users of different groups
// through the real login flow, a real OpenID Provider and the CA's
// callback; each sees the other's user identity, and its own. A user
// certificate ends with the provider's session. In process, where the
// agent's clock can move, the user certificates then expire for one agent:
// it drops the user identities within seconds and keeps the machines, and
// a TCP connection held across the expiry keeps working.
func TestUsersSeeEachOther(t *testing.T) {
	meshlab.ForEachBackend(t, meshlab.Options{Users: []oidctest.User{alice, bob}}, func(t *testing.T, lab meshlab.Lab) {
		var clk *testclock.Clock // a's clock, where the backend lets a test move it
		if lab.Backend() == meshlab.InProcess {
			clk = &testclock.Clock{}
		}
		a := lab.Join(t, "laptop-a", meshlab.NodeOptions{Clock: clk})
		b := lab.Join(t, "laptop-b", meshlab.NodeOptions{})

		// Bob first, with a provider session that ends in 45 s (as
		// Keycloak says it, refresh_expires_in): his certificate ends with
		// it. The CA refuses sessions ending within 30 s.
		const session = 45 * time.Second
		lab.IdP().SetAttack(oidctest.Attack{Response: map[string]any{"refresh_expires_in": int(session.Seconds())}})
		if err := lab.Login(t, b, bob); err != nil {
			t.Fatal(err)
		}
		lab.IdP().SetAttack(oidctest.Attack{})
		if err := lab.Login(t, a, alice); err != nil {
			t.Fatal(err)
		}
		if st := b.Status(t); st.Self.User == nil || string(st.Self.User.Email) != bob.Email {
			t.Fatalf("b's own user: %+v", st.Self.User)
		} else if d := time.Until(st.Self.User.NotAfter); d <= 20*time.Second || d > session+time.Second {
			t.Fatalf("bob's certificate ends in %v, want about %v (the provider's session)", d.Round(time.Second), session)
		}
		if st := a.Status(t); st.Self.User == nil || string(st.Self.User.Email) != alice.Email ||
			time.Until(st.Self.User.NotAfter) < 11*time.Hour {
			t.Fatalf("a's own user: %+v, want alice for the default 12h", st.Self.User)
		}
		meshlab.Eventually(t, 10*time.Second, "each to see the other's user", func() error {
			return errors.Join(checkUserPeer(a.Status(t), b, &bob), checkUserPeer(b.Status(t), a, &alice))
		})

		// A TCP connection from b to a through the tunnel.
		meshlab.ServeEcho(t, a, 7000)
		firstContact(t, route{b, a, 7000})
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		conn, err := b.Dial(ctx, netipPort(a, 7000))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := meshlab.Exchange(conn, "before"); err != nil {
			t.Fatalf("through the tunnel: %v", err)
		}
		if clk == nil {
			return // the expiry below needs a clock the test can move
		}

		// 13 hours later for a: user certificates (12h) have expired,
		// machine certificates (24h) have not.
		clk.Advance(13 * time.Hour)
		meshlab.Eventually(t, 5*time.Second, "a to drop bob's expired user identity", func() error {
			pb, err := meshlab.PeerNamed(a.Status(t), "laptop-b")
			if err != nil {
				return err // the machine must stay a peer
			}
			if pb.User != nil || pb.Name != "laptop-b" || !strings.Contains(pb.UserRejected, "expired") {
				return fmt.Errorf("a still sees b as %q (user %+v, rejected %q)", pb.Name, pb.User, pb.UserRejected)
			}
			return nil
		})
		if err := meshlab.Exchange(conn, "after"); err != nil {
			t.Fatalf("the tunnel dropped with the user identity: %v", err)
		}
		// a's own user certificate expired too: it dropped it, and b sees
		// a without a user.
		meshlab.Eventually(t, 5*time.Second, "b to see a without its user", func() error {
			pa, err := meshlab.PeerNamed(b.Status(t), "laptop-a")
			if err != nil {
				return err
			}
			if pa.User != nil {
				return fmt.Errorf("b still sees %s", pa.Name)
			}
			return nil
		})
	})
}
