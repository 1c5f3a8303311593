package testmesh_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/tstest/meshlab"
)

// TestExpiredWhileCADownRecovers: the CA is down for longer than a
// certificate lives (an injected clock jumps past every expiry while it is
// down). Once it is back, every agent renews after expiry with its keys
// alone — no token, no restart, the same device — and the mesh carries
// traffic again. A device revoked before the outage does not come back
// this way.
func TestExpiredWhileCADownRecovers(t *testing.T) {
	t.Parallel()
	const life = 2 * time.Minute
	clk := &testclock.Clock{}
	m := meshlab.NewInProc(t, meshlab.InProcOptions{Clock: clk, Config: func(cfg *ca.Config, _ string) {
		cfg.MachineCertLifetime = ca.Duration(life)
	}})
	var nodes []*meshlab.InProcNode
	for _, name := range []string{"a", "b", "c"} {
		nodes = append(nodes, m.AddNode(t, name, meshlab.NodeOptions{Clock: clk}))
	}
	bad := m.AddNode(t, "bad", meshlab.NodeOptions{Clock: clk})
	waitPeers(t, nodes, "a", "b", "c", "bad")
	badID := bad.Status(t).Self.DeviceID
	if _, err := m.Server.CA.Revoke(t.Context(), badID); err != nil {
		t.Fatal(err)
	}
	waitPeers(t, nodes, "a", "b", "c")
	before := map[string]certs.DeviceID{}
	for _, n := range nodes {
		before[n.Name] = n.Status(t).Self.DeviceID
	}
	devices := len(devicesOf(t, m))

	m.StopServer(t)
	clk.Advance(life + 2*time.Minute) // every certificate is now expired
	meshlab.Eventually(t, 30*time.Second, "every agent to try renewing while the CA is down", func() error {
		for _, n := range append(nodes, bad) {
			if !strings.Contains(n.Logs.String(), "renewal failed") {
				return fmt.Errorf("%s has not tried yet", n.Name)
			}
		}
		return nil
	})
	m.StartServer(t)

	meshlab.Eventually(t, 2*time.Minute, "every agent to renew after expiry and see the others again", func() error {
		for _, n := range nodes {
			st := n.Status(t)
			if !st.Self.CertNotAfter.After(clk.Now()) {
				return fmt.Errorf("%s still holds a certificate that expired at %s", n.Name, st.Self.CertNotAfter)
			}
			if st.Self.DeviceID != before[n.Name] {
				return fmt.Errorf("%s is device %s now, was %s", n.Name, st.Self.DeviceID, before[n.Name])
			}
		}
		return peersAre(t, nodes, "a", "b", "c")
	})
	for i, n := range nodes {
		meshlab.StartUDPStream(t, n, nodes[(i+1)%len(nodes)], 9100, 50*time.Millisecond).Stop()
	}
	if got := len(devicesOf(t, m)); got != devices {
		t.Fatalf("%d devices after the outage, want the same %d (nobody enrolled again)", got, devices)
	}
	// The revoked device tried, was refused, and holds its expired
	// certificate still; nobody has it as a peer.
	meshlab.Eventually(t, 30*time.Second, "the revoked device to be refused", func() error {
		if !strings.Contains(bad.Logs.String(), "is revoked") {
			return fmt.Errorf("no refusal in its log yet")
		}
		return nil
	})
	if st := bad.Status(t); st.Self.CertNotAfter.After(clk.Now()) {
		t.Fatalf("the revoked device renewed after expiry: certificate valid until %s", st.Self.CertNotAfter)
	}
	if err := peersAre(t, nodes, "a", "b", "c"); err != nil {
		t.Fatal(err)
	}
}

// peersAre checks that each node has exactly the other named nodes as
// verified peers, each configured in its WireGuard device.
func peersAre(t *testing.T, nodes []*meshlab.InProcNode, names ...string) error {
	for _, n := range nodes {
		st := n.Status(t)
		want := len(names) - 1
		if len(st.Peers) != want {
			return fmt.Errorf("%s has %d peers, want %d", n.Name, len(st.Peers), want)
		}
		for _, name := range names {
			if name == n.Name {
				continue
			}
			if _, err := meshlab.PeerNamed(st, name); err != nil {
				return fmt.Errorf("%s: %w", n.Name, err)
			}
		}
		stats, err := n.Agent.Device().Peers()
		if err != nil {
			return err
		}
		if len(stats) != want {
			return fmt.Errorf("%s's WireGuard device holds %d peers, want %d", n.Name, len(stats), want)
		}
	}
	return nil
}

func waitPeers(t *testing.T, nodes []*meshlab.InProcNode, names ...string) {
	t.Helper()
	meshlab.Eventually(t, 30*time.Second, "peers "+strings.Join(names, ", "), func() error { return peersAre(t, nodes, names...) })
}

func devicesOf(t *testing.T, m *meshlab.InProc) []certs.DeviceID {
	t.Helper()
	devs, err := m.Server.CA.Devices(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []certs.DeviceID
	for _, d := range devs {
		ids = append(ids, d.ID)
	}
	return ids
}
