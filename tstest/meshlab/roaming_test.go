package meshlab_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/meshlab"
)

// roamNotice bounds the time from a laptop's new address to its peers
// holding it as the laptop's endpoint: netmon's debounce, a signing and a
// relay through the coordinator. WireGuard's own roaming would take the
// next packet from the laptop, at the latest its 25 s keepalive.
const roamNotice = 5 * time.Second

// TestRoamingReadvertises: a laptop's address changes (its host is given
// a new one, the old one removed). Its agent notices (netmon), signs an
// advertisement of the new address and publishes it; its peer verifies it
// and points WireGuard at the new address, with no packet from the laptop
// needed, within roamNotice; and the mesh works across it.
func TestRoamingReadvertises(t *testing.T) {
	t.Parallel()
	lab := meshlab.NewNetNS(t, meshlab.Options{})
	laptop := lab.Join(t, "laptop", meshlab.NodeOptions{}).(*meshlab.NetNSNode)
	peer := lab.Join(t, "peer", meshlab.NodeOptions{})
	meshlab.WaitMesh(t, time.Minute, laptop, peer)
	port := laptop.Status(t).Self.ListenPort
	endpointAt := func(want netip.Addr) func() error {
		return func() error {
			ps, err := meshlab.PeerNamed(peer.Status(t), laptop.Hostname())
			if err != nil {
				return err
			}
			if ps.Endpoint != netip.AddrPortFrom(want, uint16(port)).String() {
				return fmt.Errorf("the peer has the laptop at %q, want %s:%d", ps.Endpoint, want, port)
			}
			return nil
		}
	}
	meshlab.Eventually(t, time.Minute, "the laptop at its first address", endpointAt(laptop.Agent.Host.Addr))

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	start := time.Now()
	moved, err := laptop.Agent.Host.Readdress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	meshlab.Eventually(t, roamNotice, "the peer holding the laptop's new address", endpointAt(moved))
	t.Logf("the peer held the laptop's new address %s after %s", moved, time.Since(start).Round(time.Millisecond))
	if eps := laptop.Status(t).Self.Endpoints; !slices.Contains(eps, netip.AddrPortFrom(moved, uint16(port))) {
		t.Errorf("the laptop advertises %v, without its new address %s", eps, moved)
	}
	meshlab.ServeEcho(t, peer, 7000)
	firstContact(t, route{laptop, peer, 7000})
}
