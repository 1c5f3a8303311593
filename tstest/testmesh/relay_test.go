package testmesh_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/tlsclient"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/turntest"
)

// machineCert is the TLS certificate a real agent enrolled with: its
// machine certificate and chain (enrollment.json) and its device key.
func machineCert(t *testing.T, n *meshlab.InProcNode) *tls.Certificate {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(n.StateDir, "enrollment.json"))
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		Cert wire.CertificateResponse `json:"certificate"`
	}
	if err := json.Unmarshal(data, &e); err != nil {
		t.Fatal(err)
	}
	b, err := certs.ParseBundle(e.Cert.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pemutil.Read(filepath.Join(n.StateDir, "device.key"))
	if err != nil {
		t.Fatal(err)
	}
	c := &tls.Certificate{Certificate: [][]byte{b.Machine.Raw}, PrivateKey: key, Leaf: b.Machine}
	for _, i := range b.Intermediates {
		c.Certificate = append(c.Certificate, i.Raw)
	}
	return c
}

// relayCredentials asks the CA for n's relay credentials over mTLS (HTTP/2,
// as agents talk to the server).
func relayCredentials(t *testing.T, m *meshlab.InProc, cert *tls.Certificate) (wire.RelayCredentialsResponse, int, error) {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true,
		TLSClientConfig: tlsclient.Config(m.Roots, nil, func() *tls.Certificate { return cert })}}
	defer cl.CloseIdleConnections()
	resp, err := cl.Post(m.URL.String()+wire.PathRelayCredentials, "application/json", bytes.NewReader([]byte("{}")))
	if err != nil {
		return wire.RelayCredentialsResponse{}, 0, err
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("the server answered over %s: HTTP/2 went away with the relay's ALPN", resp.Proto)
	}
	var out wire.RelayCredentialsResponse
	if resp.StatusCode != http.StatusOK {
		return out, resp.StatusCode, nil
	}
	return out, resp.StatusCode, json.NewDecoder(resp.Body).Decode(&out)
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
