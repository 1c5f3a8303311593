package e2e

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/tlsclient"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/turntest"
)

// TestKernelStandaloneRelay, through the binaries as an operator runs
// them: certmesh-server run embeds a relay; a second host runs `run --role
// relay` from CoordFiles and a key made by `certmesh-server relay-key`,
// listed under relay.relays. An enrolled agent's credentials (from the CA,
// over its machine certificate) allocate at both, over TLS at the
// standalone relay and over UDP at the embedded one, and a datagram
// crosses from one relay to the other both ways. Revoked, the device gets
// no credentials and its allocation at the embedded relay relays nothing.
func TestKernelStandaloneRelay(t *testing.T) {
	t.Parallel()
	m := newTestMesh(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := m.InitServer(ctx); err != nil {
		t.Fatal(err)
	}
	rh, err := m.Net.AddHost(ctx, "relay")
	if err != nil {
		t.Fatal(err)
	}
	relayDir := filepath.Join(m.Dir, "relay", "state")
	udp, alt := netip.AddrPortFrom(rh.Addr, ca.DefaultRelayUDPPort), netip.AddrPortFrom(rh.Addr, ca.DefaultRelayUDPAltPort)
	tlsAddr := netip.AddrPortFrom(rh.Addr, ServerPort)
	if err := m.PatchServerConfig(map[string]any{"relay": ca.RelayConfig{Relays: []ca.StandaloneRelay{
		{Name: "r1", UDP: udp.String(), UDPAlt: alt.String(), TLS: tlsAddr.String()}}}}); err != nil {
		t.Fatal(err)
	}
	if err := copyFiles(m.Server.StateDir, relayDir, CoordFiles); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(relayDir, "r1.key")
	if _, err := m.ServerCLI(ctx, "relay-key", "--state", m.Server.StateDir, "--name", "r1", "--out", keyFile); err != nil {
		t.Fatal(err)
	}
	if err := m.RunServer(ctx); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(m.Dir, "relay", "relay.log")
	p, err := rh.Start(context.Background(), logPath, m.Bin.Server, "run", "--role", "relay", "--state", relayDir,
		"--listen", tlsAddr.String(), "--relay-key", keyFile, "--ca-url", m.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- standalone relay log ---\n%s", b)
		}
	})
	roots, err := ca.LoadRoots(m.Server.StateDir, certs.TrustDomain(m.opts.TrustDomain))
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := tlsclient.Config(roots, nil, nil)
	err = waitProc(ctx, p, func() error {
		c, err := rh.DialContext(ctx, "tcp", tlsAddr.String())
		if err != nil {
			return err
		}
		defer c.Close()
		cfg := tlsCfg.Clone()
		cfg.NextProtos = []string{wire.RelayALPN}
		return tls.Client(c, cfg).HandshakeContext(ctx)
	})
	if err != nil {
		t.Fatalf("waiting for the standalone relay: %v", err)
	}

	a, err := m.AddAgent(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	h := a.Host
	cert := turntest.AgentCertificate(t, a.StateDir)
	creds, st, err := turntest.Credentials(t, m.URL, roots, cert, h.DialContext)
	if err != nil || st != http.StatusOK || len(creds.Relays) != 2 || creds.Relays[1].Name != "r1" || creds.Relays[1].UDP != udp.String() {
		t.Fatalf("credentials: %d %+v", st, creds)
	}
	embedded, standalone := creds.Relays[0], creds.Relays[1]
	tc, err := h.DialContext(ctx, "tcp", standalone.TLS)
	if err != nil {
		t.Fatal(err)
	}
	viaR1 := turntest.DialConn(t, standalone.TLS, turntest.TLSConn(t, tc, tlsCfg), creds.Username, standalone.Password)
	if err := viaR1.Allocate(); err != nil {
		t.Fatalf("allocation at the standalone relay over TLS: %v", err)
	}
	pc, err := h.ListenPacket("udp4", netip.AddrPortFrom(h.Addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	viaServer := turntest.DialConn(t, embedded.UDP, pc, creds.Username, embedded.Password)
	if err := viaServer.Allocate(); err != nil {
		t.Fatalf("allocation at the embedded relay over UDP: %v", err)
	}
	turntest.Exchange(t, viaR1, viaServer)

	if err := m.Revoke(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, st, _ := turntest.Credentials(t, m.URL, roots, cert, h.DialContext); st != http.StatusForbidden {
		t.Fatalf("a revoked device got credentials: %d", st)
	}
	if _, err := viaR1.Relayed.WriteTo([]byte("to the revoked device"), viaServer.Relayed.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	turntest.ExpectNothing(t, viaServer.Relayed, "datagram to the revoked device's allocation at the embedded relay")
}
