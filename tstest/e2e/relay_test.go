package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/tlsclient"
	"github.com/certmesh/certmesh/tstest/netns"
	"github.com/certmesh/certmesh/tstest/turntest"
)

// TestKernelStandaloneRelay, through the binaries as an operator runs
// them: certmesh-server run embeds a relay; a second host runs `run --role
// relay` from CoordFiles and a key made by `certmesh-server relay-key`,
// listed under relay.relays. An enrolled agent's credentials (from the CA,
// over its machine certificate) allocate at both, over TLS at the
// standalone relay and over UDP at the embedded one, and a datagram
// crosses from one relay to the other both ways. Revoked, the device gets
// no credentials, its allocation at the embedded relay relays nothing, and
// within a CRL fetch the standalone relay refuses the credentials it still
// holds.
func TestKernelStandaloneRelay(t *testing.T) {
	t.Parallel()
	m := newTestMesh(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := m.InitServer(ctx); err != nil {
		t.Fatal(err)
	}
	r1, err := m.AddStandaloneRelay(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	udp := r1.Entry.UDP
	if err := m.PatchServerConfig(map[string]any{"relay": ca.RelayConfig{Relays: []ca.StandaloneRelay{r1.Entry}}}); err != nil {
		t.Fatal(err)
	}
	if err := m.RunServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(r1.LogPath)
			t.Logf("--- standalone relay log ---\n%s", b)
		}
	})
	if err := m.StartRelay(ctx, r1); err != nil {
		t.Fatal(err)
	}
	roots, err := ca.LoadRoots(m.Server.StateDir, certs.TrustDomain(m.opts.TrustDomain))
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := tlsclient.Config(roots, nil, nil)

	a, err := m.AddAgent(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	h := a.Host
	cert := turntest.AgentCertificate(t, a.StateDir)
	creds, st, err := turntest.Credentials(t, m.URL, roots, cert, h.DialContext)
	if err != nil || st != http.StatusOK || len(creds.Relays) != 2 || creds.Relays[1].Name != "r1" || creds.Relays[1].UDP != udp {
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

	// The standalone relay reads the CA's CRL (--ca-url, every 5 s): the
	// credentials the device still holds, unexpired for minutes, soon
	// allocate nothing there either.
	crlCtx, crlCancel := context.WithTimeout(ctx, 30*time.Second)
	defer crlCancel()
	err = netns.WaitFor(crlCtx, 500*time.Millisecond, func() error {
		pc, err := h.ListenPacket("udp4", netip.AddrPortFrom(h.Addr, 0).String())
		if err != nil {
			return err
		}
		c := turntest.DialConn(t, standalone.UDP, pc, creds.Username, standalone.Password)
		err = c.Allocate()
		switch {
		case err == nil:
			_ = c.Relayed.Close() // under the device's allocation quota
			return fmt.Errorf("the standalone relay still allocates for the revoked device (credentials expire %s)", creds.Expires.Format(time.RFC3339))
		case !strings.Contains(err.Error(), "error 400") && !strings.Contains(err.Error(), "error 401"):
			// pion answers a refused username 400 (401 is the challenge).
			// The device's allocation quota (486) is no refusal of it.
			return fmt.Errorf("the standalone relay refused for another reason than the credentials: %w", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
