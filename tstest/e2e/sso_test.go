package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/netns"
	"github.com/certmesh/certmesh/tstest/oidctest"
)

const idpPassword = "pw"

var (
	alice = oidctest.User{Subject: "s-alice", Email: "alice@corp.example", EmailVerified: true, Password: idpPassword, Groups: []string{"eng"}}
	bob   = oidctest.User{Subject: "s-bob", Email: "bob@corp.example", EmailVerified: true, Password: idpPassword, Groups: []string{"finance"}}
)

// newSSOMesh starts a certmesh-server that is a relying party of an OpenID
// Provider running in the test process (tstest/oidctest), with no agents
// yet.
//
// The provider listens on the test process's 127.0.0.1:PORT and its issuer
// is https://127.0.0.1:PORT; the server runs in its own namespace, whose
// loopback is another one. A forwarder listening on 127.0.0.1:PORT inside
// the server's namespace relays to the provider, byte for byte, so that the
// issuer the CA dials, the one in the ID tokens and the provider's TLS
// certificate (for 127.0.0.1) all agree. The person's browser is the test
// process too: it signs in at the provider directly, and delivers the
// redirect to the CA's callback from the agent's namespace (Mesh.Login).
func newSSOMesh(t *testing.T) (*Mesh, *oidctest.Provider) {
	t.Helper()
	m := newTestMesh(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := m.InitServer(ctx); err != nil {
		t.Fatal(err)
	}
	idp := oidctest.New(t, oidctest.WithUser(alice), oidctest.WithUser(bob))
	iss, err := url.Parse(idp.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := m.Server.Host.ForwardTCP(iss.Host, iss.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fwd.Close() })

	redirect := (&url.URL{Scheme: "https", Host: netip.AddrPortFrom(m.Server.Host.Addr, ServerPort).String(),
		Path: wire.PathLoginCallback}).String()
	idp.AddClient("certmesh", "secret", redirect)
	err = m.PatchServerConfig(map[string]any{"oidc": ca.OIDCConfig{
		Issuer: idp.Issuer(), ClientID: "certmesh", ClientSecret: "secret", RedirectURL: redirect, CAFile: idp.CAFile(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.RunServer(ctx); err != nil {
		t.Fatal(err)
	}
	return m, idp
}

// signIn is u signing in at idp.
func signIn(idp *oidctest.Provider, u oidctest.User) SignIn {
	return func(ctx context.Context, authURL string) (*url.URL, error) {
		return idp.Login(ctx, authURL, u.Email, u.Password)
	}
}

// login logs u in on a through `certmesh login` and checks what it says.
func login(ctx context.Context, t *testing.T, m *Mesh, idp *oidctest.Provider, a *Agent, u oidctest.User) {
	t.Helper()
	out, err := m.Login(ctx, a, signIn(idp, u))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("Logged in as %s (groups: %s)", u.Email, strings.Join(u.Groups, ", "))
	if !strings.Contains(out, want) {
		t.Fatalf("certmesh login on %s printed %q, want %q", a.Name, out, want)
	}
}

// peerOn finds the peer of st that is agent p.
func peerOn(st *agent.Status, p *Agent) (agent.PeerStatus, error) {
	for _, ps := range st.Peers {
		if ps.DeviceID == p.ID {
			return ps, nil
		}
	}
	return agent.PeerStatus{}, fmt.Errorf("%s: no verified peer %s (peers %+v, rejected %+v)", st.Self.Hostname, p.Name, st.Peers, st.Rejected)
}

// checkUserPeer checks that st shows agent p with user u logged in.
func checkUserPeer(st *agent.Status, p *Agent, u oidctest.User) error {
	ps, err := peerOn(st, p)
	if err != nil {
		return err
	}
	want := u.Email + " on " + p.Name
	var groups []string
	if ps.User != nil {
		for _, g := range ps.User.Groups {
			groups = append(groups, string(g))
		}
	}
	if ps.Name != want || ps.User == nil || string(ps.User.Email) != u.Email || !slices.Equal(groups, u.Groups) {
		return fmt.Errorf("%s sees %s as %q (user %+v, rejected %q), want %q in groups %v",
			st.Self.Hostname, p.Name, ps.Name, ps.User, ps.UserRejected, want, u.Groups)
	}
	return nil
}

// TestKernelSSO: two kernel agents log in as users of different groups
// through the real login command, a real OpenID Provider and the CA's
// callback; each sees the other's user identity. Then one user
// certificate expires: the peer drops the user identity within seconds and
// keeps the machine, and a TCP connection held across the expiry never
// stalls. Last, the other user is revoked: dropped at once, and refused at
// the next login.
func TestKernelSSO(t *testing.T) {
	m, idp := newSSOMesh(t)
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	start := time.Now()
	a, err := m.AddAgent(ctx, "laptop-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.AddAgent(ctx, "laptop-b")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WaitConverged(ctx, []*Agent{a, b}, false); err != nil {
		t.Fatal(err)
	}
	t.Logf("server and 2 agents up in %v", time.Since(start).Round(time.Millisecond))

	// Bob first, with a provider session that ends in 45 s (as Keycloak
	// says it, refresh_expires_in): his certificate ends with it. The CA
	// refuses sessions ending within 30 s, and user certificates live at
	// least a minute otherwise.
	const session = 45 * time.Second
	idp.SetAttack(oidctest.Attack{Response: map[string]any{"refresh_expires_in": int(session.Seconds())}})
	loginStart := time.Now()
	login(ctx, t, m, idp, b, bob)
	idp.SetAttack(oidctest.Attack{})
	login(ctx, t, m, idp, a, alice)
	t.Logf("two logins through certmesh login, the provider and the CA's callback in %v", time.Since(loginStart).Round(time.Millisecond))

	stB := mustStatus(ctx, t, b)
	if stB.Self.User == nil || string(stB.Self.User.Email) != bob.Email {
		t.Fatalf("b's own user: %+v", stB.Self.User)
	}
	bobEnds := stB.Self.User.NotAfter
	if d := time.Until(bobEnds); d <= 20*time.Second || d > session+time.Second {
		t.Fatalf("bob's certificate ends in %v, want about %v (the provider's session)", d.Round(time.Second), session)
	}
	if st := mustStatus(ctx, t, a); st.Self.User == nil || string(st.Self.User.Email) != alice.Email ||
		time.Until(st.Self.User.NotAfter) < 11*time.Hour {
		t.Fatalf("a's own user: %+v, want alice for the default 12h", st.Self.User)
	}

	// Each sees the other's user, in `certmesh status --json` run in its
	// namespace.
	waitOK(ctx, t, "each agent to see the other's user", func() error {
		stA, err := a.StatusCLI(ctx, m.Bin)
		if err != nil {
			return err
		}
		stB, err := b.StatusCLI(ctx, m.Bin)
		if err != nil {
			return err
		}
		return errors.Join(checkUserPeer(stA, b, bob), checkUserPeer(stB, a, alice))
	})

	// A TCP connection from b to a, with an exchange every 200 ms, held
	// across the expiry of bob's certificate.
	echoAddr := netip.AddrPortFrom(a.V4(), 7000)
	serveEcho(t, a.Host, echoAddr)
	var conn net.Conn
	wctx, wcancel := context.WithTimeout(ctx, FirstContactTimeout)
	err = netns.WaitFor(wctx, pollInterval, func() error {
		dctx, cancel := context.WithTimeout(wctx, 2*time.Second)
		defer cancel()
		c, err := b.Host.DialContext(dctx, "tcp", echoAddr.String())
		if err != nil {
			return err
		}
		conn = c
		return nil
	})
	wcancel()
	if err != nil {
		t.Fatalf("b cannot connect to a: %v", err)
	}
	defer conn.Close()
	flow := startEchoFlow(conn, 200*time.Millisecond)
	defer flow.stop()

	// a drops bob's identity, not b's machine, shortly after the
	// certificate's end.
	var dropped time.Time
	wctx, wcancel = context.WithTimeout(ctx, time.Until(bobEnds)+15*time.Second)
	err = netns.WaitFor(wctx, pollInterval, func() error {
		st, err := a.Status(ctx)
		if err != nil {
			return err
		}
		p, err := peerOn(st, b)
		if err != nil {
			return fmt.Errorf("the machine must stay a peer: %w", err)
		}
		if p.User != nil {
			return fmt.Errorf("a still sees %q", p.Name)
		}
		dropped = time.Now()
		if time.Now().Before(bobEnds) {
			t.Errorf("a dropped bob %v before his certificate ended", time.Until(bobEnds))
		}
		// Either a's own sweep found the certificate expired, or b
		// noticed first and published its bundle without it: the user
		// is gone either way, never refused for another reason.
		if p.Name != b.Name || !p.Verified || (p.UserRejected != "" && !strings.Contains(p.UserRejected, "expired")) {
			t.Errorf("after the expiry a sees b as %q (verified %v, user rejected %q), want %q with an expired or withdrawn user certificate",
				p.Name, p.Verified, p.UserRejected, b.Name)
		}
		return nil
	})
	wcancel()
	if err != nil {
		t.Fatalf("bob's expired user identity: %v", err)
	}
	t.Logf("bob's user certificate ended at %s; a dropped the identity %v later",
		bobEnds.Format(time.TimeOnly), dropped.Sub(bobEnds).Round(time.Millisecond))

	// The status command says the same; b dropped its own user; b still
	// sees alice.
	waitOK(ctx, t, "the expiry in every view", func() error {
		stA, err := a.StatusCLI(ctx, m.Bin)
		if err != nil {
			return err
		}
		if p, err := peerOn(stA, b); err != nil || p.User != nil {
			return fmt.Errorf("certmesh status on a: %+v, %v", p, err)
		}
		stB, err := b.StatusCLI(ctx, m.Bin)
		if err != nil {
			return err
		}
		if stB.Self.User != nil {
			return fmt.Errorf("b still shows its own expired user %+v", stB.Self.User)
		}
		return checkUserPeer(stB, a, alice)
	})

	// Two more seconds of traffic after the drop, then the verdict on the
	// connection.
	time.Sleep(2 * time.Second)
	n, maxGap, last, err := flow.stop()
	if err != nil {
		t.Fatalf("the TCP connection across the expiry failed: %v", err)
	}
	if !last.After(dropped) {
		t.Fatalf("no exchange after the identity was dropped (last at %s)", last.Format(time.TimeOnly))
	}
	if maxGap > 2*time.Second {
		t.Fatalf("the TCP connection stalled for %v around the expiry", maxGap.Round(time.Millisecond))
	}
	t.Logf("TCP connection b -> a: %d exchanges across the expiry, longest gap %v", n, maxGap.Round(time.Millisecond))
	if _, err := peerOn(mustStatus(ctx, t, a), b); err != nil {
		t.Fatal(err)
	}
	keys, err := a.WGPeers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(keys, b.Key.String()) {
		t.Fatalf("wg show on a lost b's key with bob's identity: %v", keys)
	}

	// `users revoke`: b drops alice within seconds and keeps a's machine;
	// alice cannot log in again.
	revoke := time.Now()
	if err := m.RevokeUser(ctx, alice.Email); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel = context.WithTimeout(ctx, 10*time.Second)
	err = netns.WaitFor(wctx, pollInterval, func() error {
		st, err := b.Status(wctx)
		if err != nil {
			return err
		}
		p, err := peerOn(st, a)
		if err != nil {
			return fmt.Errorf("the machine must stay a peer: %w", err)
		}
		if p.User != nil || !strings.Contains(p.UserRejected, "revoked") {
			return fmt.Errorf("b sees a as %q (user rejected %q)", p.Name, p.UserRejected)
		}
		return nil
	})
	wcancel()
	if err != nil {
		t.Fatalf("revoked user: %v", err)
	}
	t.Logf("users revoke %s: b dropped the identity after %v", alice.Email, time.Since(revoke).Round(time.Millisecond))
	if _, err := m.Login(ctx, a, signIn(idp, alice)); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("a revoked user logging in again: %v", err)
	}
}

// echoFlow exchanges a short message over a connection to an echo
// server at a fixed pace until stopped.
type echoFlow struct {
	done   chan struct{}
	finish sync.Once
	wg     sync.WaitGroup

	mu     sync.Mutex
	n      int
	maxGap time.Duration
	last   time.Time
	err    error
}

func startEchoFlow(c net.Conn, every time.Duration) *echoFlow {
	f := &echoFlow{done: make(chan struct{}), last: time.Now()}
	f.wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		buf := make([]byte, 8)
		for i := 0; ; i++ {
			select {
			case <-f.done:
				return
			case <-tick.C:
			}
			msg := fmt.Appendf(nil, "%08d", i%100000000)
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, err := c.Write(msg)
			if err == nil {
				_, err = io.ReadFull(c, buf)
			}
			if err == nil && string(buf) != string(msg) {
				err = fmt.Errorf("echo %q, sent %q", buf, msg)
			}
			now := time.Now()
			f.mu.Lock()
			if err != nil {
				f.err = fmt.Errorf("exchange %d: %w", i, err)
				f.mu.Unlock()
				return
			}
			f.n++
			f.maxGap = max(f.maxGap, now.Sub(f.last))
			f.last = now
			f.mu.Unlock()
		}
	})
	return f
}

// stop ends the flow and returns the number of exchanges, the longest time
// between two, the time of the last and the error that ended it early.
func (f *echoFlow) stop() (int, time.Duration, time.Time, error) {
	f.finish.Do(func() { close(f.done) })
	f.wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n, f.maxGap, f.last, f.err
}
