package testmesh_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent/relayc"
	"github.com/certmesh/certmesh/tstest/meshlab"
)

// relaycClient runs the agent's relay client (agent/relayc) with
// credentials fetched from the CA over n's machine certificate; received
// datagrams go to got.
func relaycClient(t *testing.T, m *meshlab.InProc, n *meshlab.InProcNode, got chan<- string) *relayc.Client {
	t.Helper()
	cert := machineCert(t, n)
	c, err := relayc.New(relayc.Config{
		Credentials: func(context.Context) (relayc.Credentials, error) {
			resp, st, err := relayCredentials(t, m, cert)
			if err != nil || st != http.StatusOK {
				return relayc.Credentials{}, fmt.Errorf("relay credentials: %d %v", st, err)
			}
			cr := relayc.Credentials{Username: resp.Username, Expires: resp.Expires}
			for _, r := range resp.Relays {
				cr.Servers = append(cr.Servers, relayc.Server{Name: r.Name, UDP: r.UDP, UDPAlt: r.UDPAlt, TLS: r.TLS, Password: r.Password})
			}
			return cr, nil
		},
		TLS:     relayc.TLSConfig(m.Roots, nil),
		Receive: func(b []byte, from netip.AddrPort) { got <- string(b) + " from " + from.String() },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for !c.RelayedAddr().IsValid() {
		if time.Now().After(deadline) {
			t.Fatalf("relayc of %s allocated nothing: %+v", n.Name, c.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return c
}

// TestRelaycAgainstServer: the agent's relay client, with credentials from
// the CA, allocates at the embedded relay and relays to another agent's
// allocation both ways; once its device is revoked nothing reaches it.
func TestRelaycAgainstServer(t *testing.T) {
	t.Parallel()
	m := meshlab.NewInProc(t, meshlab.InProcOptions{})
	a, b := m.AddNode(t, "a", meshlab.NodeOptions{}), m.AddNode(t, "b", meshlab.NodeOptions{})
	gotA, gotB := make(chan string, 16), make(chan string, 16)
	rcA, rcB := relaycClient(t, m, a, gotA), relaycClient(t, m, b, gotB)
	ctx := t.Context()
	if err := rcA.Permit(ctx, []netip.Addr{rcB.RelayedAddr().Addr()}); err != nil {
		t.Fatal(err)
	}
	if err := rcB.Permit(ctx, []netip.Addr{rcA.RelayedAddr().Addr()}); err != nil {
		t.Fatal(err)
	}
	expect := func(got <-chan string, want string) error {
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("got %q, want %q", g, want)
			}
			return nil
		case <-time.After(3 * time.Second):
			return fmt.Errorf("nothing arrived (want %q)", want)
		}
	}
	if err := rcA.WriteTo(ctx, []byte("a to b"), rcB.RelayedAddr()); err != nil {
		t.Fatal(err)
	}
	if err := expect(gotB, "a to b from "+rcA.RelayedAddr().String()); err != nil {
		t.Fatal(err)
	}
	if err := rcB.WriteTo(ctx, []byte("b to a"), rcA.RelayedAddr()); err != nil {
		t.Fatal(err)
	}
	if err := expect(gotA, "b to a from "+rcB.RelayedAddr().String()); err != nil {
		t.Fatal(err)
	}
	relayedA := rcA.RelayedAddr()
	if _, err := m.Server.CA.Revoke(ctx, a.Status(t).Self.DeviceID); err != nil {
		t.Fatal(err)
	}
	_ = rcB.WriteTo(ctx, []byte("to the revoked device"), relayedA)
	if err := expect(gotA, "to the revoked device from "+rcB.RelayedAddr().String()); err == nil {
		t.Fatal("a datagram reached the revoked device through the relay")
	}
}
