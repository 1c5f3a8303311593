package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/netns"
	"github.com/certmesh/certmesh/tstest/testpolicy"
)

// TestKernelSplitRoles: the CA (`run --role ca`) and the coordinator (`run
// --role coord`, on another host, holding no CA key) as separate
// processes. Three agents enroll at the CA, are sent to the coordinator
// and mesh through it; the CRL and a new policy reach them, from the CA
// every --ca-fetch-interval and through the coordinator, which fetches the
// CA's documents and relays them (a2 gets them only that way); a
// revocation at the CA removes the device from every other agent's
// WireGuard device.
func TestKernelSplitRoles(t *testing.T) {
	t.Parallel()
	m := newTestMesh(t)
	const fetch = 2 * time.Second
	m.opts.AgentArgs = append(m.opts.AgentArgs, "--ca-fetch-interval", fetch.String())
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := m.StartSplitServers(ctx); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"intermediate.key", "root.key", "log.key"} {
		if _, err := os.Stat(filepath.Join(m.Coord.StateDir, f)); !os.IsNotExist(err) {
			t.Fatalf("the coordinator's state directory holds %s (%v)", f, err)
		}
	}
	// a2 fetches from the CA only at start (and hourly): what reaches it
	// later comes through the coordinator's relay of the CA's documents.
	var agents []*Agent
	for i := 1; i <= 3; i++ {
		var o AgentOptions
		if i == 2 {
			o.Args = []string{"--ca-fetch-interval", "1h"}
		}
		a, err := m.AddAgentWith(ctx, fmt.Sprintf("a%d", i), o)
		if err != nil {
			t.Fatal(err)
		}
		agents = append(agents, a)
	}
	if err := m.WaitConverged(ctx, agents, false); err != nil {
		t.Fatal(err)
	}
	for _, a := range agents {
		st := mustStatus(ctx, t, a)
		if st.Coordinator.URL != m.Coord.URL || !st.Coordinator.Connected {
			t.Fatalf("%s: coordinator %+v, want connected to %s (not the CA at %s)", a.Name, st.Coordinator, m.Coord.URL, m.URL)
		}
		if st.CRL.Number == "" || st.CRL.Stale {
			t.Errorf("%s holds no current CRL: %+v", a.Name, st.CRL)
		}
	}
	a1, a2, bad := agents[0], agents[1], agents[2]
	for _, a := range agents {
		serveEcho(t, a.Host, netip.AddrPortFrom(a.V4(), 7000))
	}
	for _, pair := range [][2]*Agent{{a1, a2}, {a1, bad}, {a2, bad}} {
		if err := reachWithin(ctx, pair[0], netip.AddrPortFrom(pair[1].V4(), 7000), FirstContactTimeout); err != nil {
			t.Fatal(err)
		}
	}

	// A policy published at the CA arrives from the CA.
	v, err := m.PublishPolicy(ctx, testpolicy.DB(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("policy version %d installed on every agent after %v", v, waitPolicy(ctx, t, v, agents...))

	// A revocation at the CA: the CRL arrives (a1 from the CA itself, a2
	// through the coordinator) and the device leaves every other agent's
	// WireGuard device.
	start := time.Now()
	if err := m.Revoke(ctx, bad); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*fetch+10*time.Second)
	err = m.WaitGone(wctx, []*Agent{a1, a2}, bad)
	wcancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s gone from every peer after %v (CA fetch interval %v)", bad.Name, time.Since(start).Round(time.Millisecond), fetch)
	// The coordinator apart from the CA cannot learn of the revocation, so
	// it still relays the device's bundle: each agent refuses it as revoked.
	for _, a := range []*Agent{a1, a2} {
		st := mustStatus(ctx, t, a)
		if st.CRL.Entries < 1 {
			t.Errorf("%s holds CRL %+v, want the one listing %s", a.Name, st.CRL, bad.Name)
		}
		if !slices.ContainsFunc(st.Rejected, func(r agent.Rejection) bool { return r.Reason == certs.ReasonRevoked }) {
			t.Errorf("%s: rejections %+v, want %s refused as revoked", a.Name, st.Rejected, bad.Name)
		}
	}
	// The others stay: a2 is still a1's verified peer, in its device.
	st := mustStatus(ctx, t, a1)
	if !slices.ContainsFunc(st.Peers, func(p agent.PeerStatus) bool { return p.DeviceID == a2.ID && p.Verified }) {
		t.Errorf("a1 lost a2 too: peers %+v", st.Peers)
	}
	if err := a1.checkWG(ctx, []*Agent{a2}); err != nil {
		t.Error(err)
	}
}

// reachWithin retries a TCP echo from a to dst over the mesh until one
// succeeds or limit passes (first contact, see FirstContactTimeout).
func reachWithin(ctx context.Context, a *Agent, dst netip.AddrPort, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	err := netns.WaitFor(ctx, 200*time.Millisecond, func() error { return reach(ctx, a.Host, dst, time.Second) })
	if err != nil {
		return fmt.Errorf("%s cannot reach %s over the mesh: %w", a.Name, dst, err)
	}
	return nil
}

// waitPolicy waits until every agent holds policy version v and returns
// how long that took.
func waitPolicy(ctx context.Context, t *testing.T, v uint64, agents ...*Agent) time.Duration {
	t.Helper()
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := WaitPolicy(wctx, v, agents...); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}
