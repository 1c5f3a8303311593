package testmesh_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent/relayc"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/tstest/meshlab"
)

// relayEnd is one agent's relay client and what reached it.
type relayEnd struct {
	c       *relayc.Client
	got     chan string
	changes chan netip.AddrPort
}

// startRelayClient runs agent/relayc's Client on credentials the server's
// CA issues for cert over mTLS; with tlsOnly the relays' UDP ports are
// withheld, as if UDP were blocked.
func startRelayClient(t *testing.T, m *meshlab.InProc, cert *tls.Certificate, clock *testclock.Clock, tlsOnly bool) *relayEnd {
	t.Helper()
	e := &relayEnd{got: make(chan string, 64), changes: make(chan netip.AddrPort, 16)}
	c, err := relayc.New(relayc.Config{
		Credentials: func(context.Context) (relayc.Credentials, error) {
			resp, st, err := relayCredentials(t, m, cert)
			if err != nil || st != http.StatusOK {
				return relayc.Credentials{}, fmt.Errorf("credentials: %d %v", st, err)
			}
			if tlsOnly {
				for i := range resp.Relays {
					resp.Relays[i].UDP, resp.Relays[i].UDPAlt = "", ""
				}
			}
			return relayc.FromWire(resp)
		},
		TLS:           relayc.TLSConfig(m.Roots, nil),
		Receive:       func(b []byte, _ netip.AddrPort) { e.got <- string(b) },
		OnChange:      func(a netip.AddrPort) { e.changes <- a },
		Now:           clock.Now,
		ProbeInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

func (e *relayEnd) nextChange(t *testing.T) netip.AddrPort {
	t.Helper()
	select {
	case a := <-e.changes:
		return a
	case <-time.After(15 * time.Second):
		t.Fatal("no relayed address reported")
		return netip.AddrPort{}
	}
}

// sendRelayed writes msg from one end to the other's relayed address until it
// arrives (the first datagrams may race the ChannelBind).
func sendRelayed(t *testing.T, from, to *relayEnd, msg string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := from.c.WriteTo(context.Background(), []byte(msg), to.c.RelayedAddr()); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-to.got:
			if got == msg {
				return
			}
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%q never arrived at %s", msg, to.c.RelayedAddr())
		}
	}
}

// TestRelayClientOnCredentialsFromTheCA: two real agents' relay clients
// (agent/relayc) get credentials from the server's CA with their machine
// certificates, allocate on the embedded relay, one over UDP and one over
// TLS on the HTTPS port, and relay to each other both ways. At two thirds
// of the credentials' life (the server's and the clients' clock moved
// forward) both fetch new ones and renew their allocations on them (a
// Refresh under the new credentials, which the relay takes as the
// allocation's new expiry): the relayed addresses, which peers know, stay,
// and past the first credentials' expiry, when the relay would have
// stopped relaying for them, they still carry traffic both ways (red
// before: each renewal made a new allocation, a new relay candidate
// every 3 min 20 s).
func TestRelayClientOnCredentialsFromTheCA(t *testing.T) {
	t.Parallel()
	clock := &testclock.Clock{}
	m := meshlab.NewInProc(t, meshlab.InProcOptions{Clock: clock})
	a, b := m.AddNode(t, "a", meshlab.NodeOptions{}), m.AddNode(t, "b", meshlab.NodeOptions{})
	ea := startRelayClient(t, m, machineCert(t, a), clock, false)
	eb := startRelayClient(t, m, machineCert(t, b), clock, true)
	relA, relB := ea.nextChange(t), eb.nextChange(t)
	if st := ea.c.Status(); st.Transport != relayc.UDP || st.Relayed != relA {
		t.Fatalf("a's relay status %+v, want UDP", st)
	}
	if st := eb.c.Status(); st.Transport != relayc.TLS || st.Server != m.URL.Host {
		t.Fatalf("b's relay status %+v, want TLS on the HTTPS port %s", st, m.URL.Host)
	}
	if err := ea.c.Permit(context.Background(), []netip.Addr{relB.Addr()}); err != nil {
		t.Fatal(err)
	}
	if err := eb.c.Permit(context.Background(), []netip.Addr{relA.Addr()}); err != nil {
		t.Fatal(err)
	}
	sendRelayed(t, ea, eb, "a to b")
	sendRelayed(t, eb, ea, "b to a")

	first := map[*relayEnd]time.Time{ea: ea.c.Status().CredentialsExpire, eb: eb.c.Status().CredentialsExpire}
	clock.Advance(ca.DefaultCRLNextUpdate * 7 / 10)
	for _, e := range []*relayEnd{ea, eb} {
		meshlab.Eventually(t, 15*time.Second, "renewal on fresh credentials", func() error {
			if st := e.c.Status(); !st.CredentialsExpire.After(first[e]) {
				return fmt.Errorf("credentials expire %s, relayed %s (%s)", st.CredentialsExpire, st.Relayed, st.LastError)
			}
			return nil
		})
	}
	if a, b := ea.c.RelayedAddr(), eb.c.RelayedAddr(); a != relA || b != relB {
		t.Fatalf("after renewal a %s (was %s), b %s (was %s): a new relay candidate", a, relA, b, relB)
	}
	select {
	case a := <-ea.changes:
		t.Fatalf("a's relayed address reported changed to %s at renewal", a)
	case b := <-eb.changes:
		t.Fatalf("b's relayed address reported changed to %s at renewal", b)
	default:
	}
	clock.Advance(ca.DefaultCRLNextUpdate * 4 / 10) // the first credentials are past
	sendRelayed(t, ea, eb, "a to b on new credentials")
	sendRelayed(t, eb, ea, "b to a on new credentials")
}
