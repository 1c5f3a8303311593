package testmesh_test

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/certmesh/certmesh/internal/tlsclient"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/turntest"
)

// machineCert is the TLS certificate the agent n enrolled with.
func machineCert(t *testing.T, n *meshlab.InProcNode) *tls.Certificate {
	return turntest.AgentCertificate(t, n.StateDir)
}

// relayCredentials asks the CA for relay credentials over mTLS with cert.
func relayCredentials(t *testing.T, m *meshlab.InProc, cert *tls.Certificate) (wire.RelayCredentialsResponse, int, error) {
	return turntest.Credentials(t, m.URL.String(), m.Roots, cert, nil)
}

// allocateAt allocates at the relay with creds, over UDP or over TLS on
// the server's HTTPS port (checking the server certificate as agents do).
func allocateAt(t *testing.T, m *meshlab.InProc, creds wire.RelayCredentialsResponse, overTLS bool) (net.PacketConn, error) {
	t.Helper()
	r := creds.Relays[0]
	server, cfg := r.UDP, (*tls.Config)(nil)
	if overTLS {
		server, cfg = r.TLS, tlsclient.Config(m.Roots, nil, nil)
	}
	c := turntest.Dial(t, server, cfg, creds.Username, r.Password)
	err := c.Allocate()
	return c.Relayed, err
}

// TestRelayForEnrolledDevices: real agents get relay credentials from the
// server that embeds the relay (nothing configured), allocate over UDP and
// over TLS on the HTTPS port, and relay to each other both ways. Once one
// is revoked it gets no credentials, its allocation relays nothing, and
// the credentials it still holds allocate nothing.
func TestRelayForEnrolledDevices(t *testing.T) {
	t.Parallel()
	m := meshlab.NewInProc(t, meshlab.InProcOptions{})
	if m.Server.Relay == nil {
		t.Fatal("certmesh-server runs no relay by default")
	}
	a, b := m.AddNode(t, "a", meshlab.NodeOptions{}), m.AddNode(t, "b", meshlab.NodeOptions{})
	certA, certB := machineCert(t, a), machineCert(t, b)
	credsA, st, err := relayCredentials(t, m, certA)
	if err != nil || st != http.StatusOK {
		t.Fatalf("credentials for a: %d %v", st, err)
	}
	credsB, _, _ := relayCredentials(t, m, certB)
	relA, err := allocateAt(t, m, credsA, true)
	if err != nil {
		t.Fatalf("a allocates over TLS: %v", err)
	}
	relB, err := allocateAt(t, m, credsB, false)
	if err != nil {
		t.Fatalf("b allocates over UDP: %v", err)
	}
	send := func(from, to net.PacketConn, msg string) error {
		if _, err := from.WriteTo([]byte(msg), to.LocalAddr()); err != nil {
			return err
		}
		_ = to.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 1500)
		n, src, err := to.ReadFrom(buf)
		if err != nil {
			return err
		}
		if string(buf[:n]) != msg || src.String() != from.LocalAddr().String() {
			t.Fatalf("got %q from %s, want %q from %s", buf[:n], src, msg, from.LocalAddr())
		}
		return nil
	}
	// Each side's first write creates its permission; b's is needed for
	// a's datagram to get in.
	if _, err := relB.WriteTo([]byte("open"), relA.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	_ = relA.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, _, _ = relA.ReadFrom(make([]byte, 1500)) // may or may not arrive: a had no permission yet
	if err := send(relA, relB, "a to b over the relay"); err != nil {
		t.Fatalf("a to b: %v", err)
	}
	if err := send(relB, relA, "b to a over the relay"); err != nil {
		t.Fatalf("b to a: %v", err)
	}

	held, _, _ := relayCredentials(t, m, certA) // unexpired credentials a keeps
	if _, err := m.Server.CA.Revoke(t.Context(), a.Status(t).Self.DeviceID); err != nil {
		t.Fatal(err)
	}
	if _, st, _ := relayCredentials(t, m, certA); st != http.StatusForbidden {
		t.Fatalf("a revoked device got credentials: %d", st)
	}
	var ne net.Error
	if err := send(relB, relA, "to the revoked device"); err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("a datagram reached the revoked device's allocation (or: %v)", err)
	}
	if rel, err := allocateAt(t, m, held, false); err == nil {
		_ = rel.Close()
		t.Fatal("the revoked device allocated with credentials it still held")
	}
}
