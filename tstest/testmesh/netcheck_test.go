package testmesh_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent/netcheck"
	"github.com/certmesh/certmesh/agent/relayc"
	"github.com/certmesh/certmesh/tstest/meshlab"
)

// TestNetcheckAgainstTheServer: netcheck, with the relays the CA lists for
// an enrolled agent (as the running agent's local API gives them, which
// `certmesh netcheck` probes by default) and the pinned root read from
// that agent's state directory, reaches the embedded relay over UDP (both STUN ports: an
// endpoint-independent mapping on loopback) and over TLS on the HTTPS port
// (ALPN stun.turn, the server certificate verified against the root).
func TestNetcheckAgainstTheServer(t *testing.T) {
	m := meshlab.NewInProc(t, meshlab.InProcOptions{})
	n := m.AddNode(t, "a", meshlab.NodeOptions{})
	resp, st, err := relayCredentials(t, m, machineCert(t, n))
	if err != nil || st != http.StatusOK {
		t.Fatalf("credentials: %d %v", st, err)
	}
	creds, err := relayc.FromWire(resp)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := netcheck.StateRoots(n.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	// What `certmesh netcheck` probes without --server or --relay: the
	// relays the running agent got from the CA, without their passwords.
	var fromAgent []relayc.Server
	meshlab.Eventually(t, 20*time.Second, "the agent's relay list", func() error {
		fromAgent, err = netcheck.AgentRelays(t.Context(), n.StateDir)
		return err
	})
	for i := range creds.Servers {
		creds.Servers[i].Password = ""
	}
	if !slices.Equal(fromAgent, creds.Servers) {
		t.Fatalf("the agent lists relays %+v, the CA %+v", fromAgent, creds.Servers)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := netcheck.Run(ctx, netcheck.Config{Relays: fromAgent, TLS: relayc.TLSConfig(roots, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if !r.UDP || r.Mapping != netcheck.MappingIndependent || len(r.STUN) != 2 || r.Nearest != "server" {
		t.Fatalf("report %+v", r)
	}
	if p := r.Relays[0].TLS; p == nil || !p.OK() || p.Addr != m.URL.Host {
		t.Fatalf("TLS probe of the HTTPS port: %+v", p)
	}
}
