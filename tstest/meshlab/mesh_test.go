package meshlab_test

import (
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/meshlab"
)

// TestPeersAreWhatTheCACertified: three agents join; each ends up with
// exactly the two others as verified peers, each with the WireGuard key
// and overlay addresses the CA certified for it (from the CA's own
// records), the same keys configured in its WireGuard device and nothing
// else; and every agent reaches every other over TCP through the tunnel.
func TestPeersAreWhatTheCACertified(t *testing.T) {
	meshlab.ForEachBackend(t, meshlab.Options{}, func(t *testing.T, lab meshlab.Lab) {
		nodes := []meshlab.Node{
			lab.Join(t, "a1", meshlab.NodeOptions{}),
			lab.Join(t, "a2", meshlab.NodeOptions{}),
			lab.Join(t, "a3", meshlab.NodeOptions{}),
		}
		certified := map[string]meshlab.Device{}
		for _, d := range lab.Devices(t) {
			certified[d.Hostname] = d
		}
		for _, n := range nodes {
			d, ok := certified[n.Hostname()]
			switch {
			case !ok:
				t.Errorf("%s (%s) missing from the CA's devices", n.Hostname(), n.DeviceID())
			case d.State != "active" || d.ID != n.DeviceID():
				t.Errorf("the CA holds %s as %+v, want device %s active", n.Hostname(), d, n.DeviceID())
			case d.WireGuardKey != n.WireGuardKey() || !meshlab.SameAddrs(d.Addresses, n.Addrs()):
				t.Errorf("%s says it is %s at %v, the CA certified %s at %v", n.Hostname(), n.WireGuardKey(), n.Addrs(), d.WireGuardKey, d.Addresses)
			case !n.V4().IsValid():
				t.Errorf("%s: certified addresses %v, want an IPv4 address (and optionally IPv6)", n.Hostname(), d.Addresses)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
		meshlab.WaitMesh(t, 30*time.Second, nodes...)
		var routes []route
		for _, from := range nodes {
			meshlab.ServeEcho(t, from, 7000)
			for _, to := range nodes {
				if from != to {
					routes = append(routes, route{from, to, 7000})
				}
			}
		}
		firstContact(t, routes...)
	})
}
