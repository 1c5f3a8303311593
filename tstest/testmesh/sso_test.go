package testmesh_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/oidctest"
)

const password = "pw"

var (
	alice = oidctest.User{Subject: "s-alice", Email: "alice@corp.example", EmailVerified: true, Password: password, Groups: []string{"eng"}}
	bob   = oidctest.User{Subject: "s-bob", Email: "bob@corp.example", EmailVerified: true, Password: password, Groups: []string{"finance"}}
)

// ssoMesh is a mesh whose CA is a relying party of a test provider.
func ssoMesh(t *testing.T) (*meshlab.InProc, *oidctest.Provider) {
	m := meshlab.NewInProc(t, meshlab.InProcOptions{Options: meshlab.Options{Users: []oidctest.User{alice, bob}}})
	return m, m.IdP()
}

// login logs u in on n through n's local API, as `certmesh login` does.
func login(t *testing.T, m *meshlab.InProc, n *meshlab.InProcNode, u oidctest.User) {
	t.Helper()
	if err := m.Login(t, n, u); err != nil {
		t.Fatal(err)
	}
}

func TestLogout(t *testing.T) {
	t.Parallel()
	m, _ := ssoMesh(t)
	a := m.AddNode(t, "laptop-a", meshlab.NodeOptions{})
	b := m.AddNode(t, "laptop-b", meshlab.NodeOptions{})
	login(t, m, a, alice)
	waitUserSeen(t, b, "laptop-a")
	if err := a.Client.Logout(t.Context()); err != nil {
		t.Fatal(err)
	}
	meshlab.Eventually(t, 10*time.Second, "b to see a without alice", func() error {
		pa, err := meshlab.PeerNamed(b.Status(t), "laptop-a")
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
	t.Parallel()
	m, idp := ssoMesh(t)
	a := m.AddNode(t, "laptop-a", meshlab.NodeOptions{})
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
	meshlab.Eventually(t, 10*time.Second, "the login to fail", func() error {
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
func waitUserSeen(t *testing.T, observer *meshlab.InProcNode, host string) {
	t.Helper()
	meshlab.Eventually(t, 10*time.Second, observer.Name+" to see the user of "+host, func() error {
		p, err := meshlab.PeerNamed(observer.Status(t), host)
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
	t.Parallel()
	m, idp := ssoMesh(t)
	a := m.AddNode(t, "laptop-a", meshlab.NodeOptions{})
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
