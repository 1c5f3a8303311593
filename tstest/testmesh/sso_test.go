package testmesh_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/oidctest"
	"github.com/certmesh/certmesh/tstest/testmesh"
)

const password = "pw"

var (
	alice = oidctest.User{Subject: "s-alice", Email: "alice@corp.example", EmailVerified: true, Password: password, Groups: []string{"eng"}}
	bob   = oidctest.User{Subject: "s-bob", Email: "bob@corp.example", EmailVerified: true, Password: password, Groups: []string{"finance"}}
)

// ssoMesh is a mesh whose CA is a relying party of a test provider.
func ssoMesh(t *testing.T) (*testmesh.Mesh, *oidctest.Provider) {
	idp := oidctest.New(t, oidctest.WithUser(alice), oidctest.WithUser(bob))
	m := testmesh.New(t, testmesh.Options{Config: func(cfg *ca.Config, base string) {
		redirect := base + wire.PathLoginCallback
		idp.AddClient("certmesh", "secret", redirect)
		cfg.OIDC = &ca.OIDCConfig{Issuer: idp.Issuer(), ClientID: "certmesh", ClientSecret: "secret",
			RedirectURL: redirect, CAFile: idp.CAFile()}
	}})
	return m, idp
}

// login drives `certmesh login` through n's local API: the user follows the
// URL, signs in, and the browser lands on the CA's callback.
func login(t *testing.T, m *testmesh.Mesh, idp *oidctest.Provider, n *testmesh.Node, u oidctest.User) {
	t.Helper()
	st, err := n.Client.Login(t.Context(), agent.LoginRequest{})
	if err != nil {
		t.Fatalf("login through %s: %v", n.Name, err)
	}
	redirect, err := idp.Login(t.Context(), st.AuthURL, u.Email, u.Password)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := m.Browser().Get(redirect.String())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("callback: %d %s", resp.StatusCode, page)
	}
	testmesh.Eventually(t, 10*time.Second, n.Name+" to finish the login", func() error {
		ls, err := n.Client.LoginStatus(t.Context())
		if err != nil {
			return err
		}
		if ls.Status == wire.LoginFailed {
			t.Fatalf("login failed: %s", ls.Message)
		}
		if ls.Status != wire.LoginDone {
			return fmt.Errorf("login is %s", ls.Status)
		}
		return nil
	})
}

// peerNamed finds the peer of st whose hostname is host.
func peerNamed(st *agent.Status, host string) (agent.PeerStatus, error) {
	for _, p := range st.Peers {
		if string(p.Hostname) == host {
			return p, nil
		}
	}
	return agent.PeerStatus{}, fmt.Errorf("no verified peer %s (peers %v, refused %v)", host, st.Peers, st.Rejected)
}

func TestUsersSeeEachOther(t *testing.T) {
	clk := &testclock.Clock{}
	m, idp := ssoMesh(t)
	a := m.AddNode(t, "laptop-a", testmesh.NodeOptions{Clock: clk})
	b := m.AddNode(t, "laptop-b", testmesh.NodeOptions{})
	login(t, m, idp, a, alice)
	login(t, m, idp, b, bob)

	testmesh.Eventually(t, 10*time.Second, "each to see the other's user", func() error {
		pb, err := peerNamed(a.Status(t), "laptop-b")
		if err != nil {
			return err
		}
		if pb.Name != "bob@corp.example on laptop-b" || pb.User == nil || !slices.Equal(pb.User.Groups, []certs.Group{"finance"}) {
			return fmt.Errorf("a sees b as %q %+v", pb.Name, pb.User)
		}
		pa, err := peerNamed(b.Status(t), "laptop-a")
		if err != nil {
			return err
		}
		if pa.Name != "alice@corp.example on laptop-a" || pa.User == nil || !slices.Equal(pa.User.Groups, []certs.Group{"eng"}) {
			return fmt.Errorf("b sees a as %q %+v", pa.Name, pa.User)
		}
		return nil
	})
	if st := a.Status(t); st.Self.User == nil || st.Self.User.Email != "alice@corp.example" {
		t.Fatalf("a's own user: %+v", st.Self.User)
	}

	// A TCP connection from b to a through the tunnel, held across the
	// expiry of bob's user certificate as a sees it.
	ln, err := a.Listen(7000)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	echo := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			echo <- err
			return
		}
		defer c.Close()
		_, err = io.Copy(c, c)
		echo <- err
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := b.Dial(ctx, netip.AddrPortFrom(a.V4(), 7000))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	roundTrip := func(msg string) error {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			return errors.New("echo garbled")
		}
		return nil
	}
	if err := roundTrip("before"); err != nil {
		t.Fatalf("through the tunnel: %v", err)
	}

	// 13 hours later for a: user certificates (12h) have expired, machine
	// certificates (24h) have not.
	clk.Advance(13 * time.Hour)
	testmesh.Eventually(t, 5*time.Second, "a to drop bob's expired user identity", func() error {
		pb, err := peerNamed(a.Status(t), "laptop-b")
		if err != nil {
			return err // the machine must stay a peer
		}
		if pb.User != nil || pb.Name != "laptop-b" || !strings.Contains(pb.UserRejected, "expired") {
			return fmt.Errorf("a still sees b as %q (user %+v, rejected %q)", pb.Name, pb.User, pb.UserRejected)
		}
		return nil
	})
	if err := roundTrip("after"); err != nil {
		t.Fatalf("the tunnel dropped with the user identity: %v", err)
	}
	// a's own user certificate expired too: it dropped it, and b sees a
	// without a user.
	testmesh.Eventually(t, 5*time.Second, "b to see a without its user", func() error {
		pa, err := peerNamed(b.Status(t), "laptop-a")
		if err != nil {
			return err
		}
		if pa.User != nil {
			return fmt.Errorf("b still sees %s", pa.Name)
		}
		return nil
	})
}

func TestLogout(t *testing.T) {
	m, idp := ssoMesh(t)
	a := m.AddNode(t, "laptop-a", testmesh.NodeOptions{})
	b := m.AddNode(t, "laptop-b", testmesh.NodeOptions{})
	login(t, m, idp, a, alice)
	waitUserSeen(t, b, "laptop-a")
	if err := a.Client.Logout(t.Context()); err != nil {
		t.Fatal(err)
	}
	testmesh.Eventually(t, 10*time.Second, "b to see a without alice", func() error {
		pa, err := peerNamed(b.Status(t), "laptop-a")
		if err == nil && pa.User != nil {
			err = fmt.Errorf("b still sees %s", pa.Name)
		}
		return err
	})
	if st := a.Status(t); st.Self.User != nil {
		t.Fatalf("a still has a user after logout: %+v", st.Self.User)
	}
}

// A refused login reaches `certmesh login` with the CA's reason.
func TestLoginRefusedThroughAgent(t *testing.T) {
	m, idp := ssoMesh(t)
	a := m.AddNode(t, "laptop-a", testmesh.NodeOptions{})
	idp.SetAttack(oidctest.Attack{EmailUnverified: true})
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
	testmesh.Eventually(t, 10*time.Second, "the login to fail", func() error {
		ls, err := a.Client.LoginStatus(t.Context())
		if err != nil {
			return err
		}
		if ls.Status != wire.LoginFailed || !strings.Contains(ls.Message, "email_verified") {
			return fmt.Errorf("login %s: %s", ls.Status, ls.Message)
		}
		return nil
	})
	if st := a.Status(t); st.Self.User != nil {
		t.Fatalf("refused login left a user: %+v", st.Self.User)
	}
}

// waitUserSeen waits until observer sees a user on host's machine.
func waitUserSeen(t *testing.T, observer *testmesh.Node, host string) {
	t.Helper()
	testmesh.Eventually(t, 10*time.Second, observer.Name+" to see the user of "+host, func() error {
		p, err := peerNamed(observer.Status(t), host)
		if err == nil && p.User == nil {
			err = errors.New("no user yet")
		}
		return err
	})
}

// `certmesh login` (agent.Client.AwaitLogin) returns as soon as the user
// certificate is issued: one long poll of the agent's local API, started
// before the user signed in, answers with the certificate. (It used to ask
// once a second, so it waited up to a second after issuance.)
func TestLoginReturnsOnIssuance(t *testing.T) {
	m, idp := ssoMesh(t)
	a := m.AddNode(t, "laptop-a", testmesh.NodeOptions{})
	st, err := a.Client.Login(t.Context(), agent.LoginRequest{})
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		st  agent.LoginState
		err error
	}
	got := make(chan answer, 1)
	go func() {
		// AwaitLogin's first request, by itself: it must not come back
		// until the login has changed.
		cur, err := a.Client.WaitLogin(t.Context(), st.LoginID, st.Status)
		got <- answer{cur, err}
	}()
	redirect, err := idp.Login(t.Context(), st.AuthURL, alice.Email, alice.Password)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		t.Fatalf("the agent answered %q (%v) before the login was completed: it does not wait for a change", r.st.Status, r.err)
	default:
	}
	resp, err := m.Browser().Get(redirect.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r := <-got
	if r.err != nil || r.st.Status != wire.LoginDone || r.st.User == nil || r.st.User.Email != certs.Email(alice.Email) {
		t.Fatalf("the first answer after the callback: %+v %v, want the login done with alice's certificate", r.st, r.err)
	}
	// AwaitLogin, which `certmesh login` runs, ends on that answer.
	changes := 0
	final, err := a.Client.AwaitLogin(t.Context(), st, func(agent.LoginState) { changes++ })
	if err != nil || final.Status != wire.LoginDone || changes != 0 {
		t.Fatalf("AwaitLogin of a finished login: %+v %v (%d progress calls)", final, err, changes)
	}
}
