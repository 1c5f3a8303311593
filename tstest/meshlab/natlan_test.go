package meshlab_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/netns"
)

// TestSameNATUsesLAN: two laptops behind one endpoint-independent NAT
// router reach each other over their LAN: each shows the other on a
// direct path at its LAN address (not the router's public one, which
// would hairpin), and they exchange data through the tunnel.
func TestSameNATUsesLAN(t *testing.T) {
	lab, ctx := natLab(t, time.Minute)
	r, err := lab.Mesh.Net.AddRouter(ctx, "home", netns.RouterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*meshlab.NetNSNode
	for _, name := range []string{"lap1", "lap2"} {
		h, err := r.AddHost(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, lab.JoinOn(t, h, meshlab.NodeOptions{}, lab.Mesh.STUNArgs()...).(*meshlab.NetNSNode))
	}
	a, b := nodes[0], nodes[1]
	meshlab.ServeEcho(t, a, 7000)
	meshlab.ServeEcho(t, b, 7000)
	firstContact(t, route{a, b, 7000}, route{b, a, 7000})
	for _, n := range [][2]*meshlab.NetNSNode{{a, b}, {b, a}} {
		self, peer := n[0], n[1]
		lan := netip.AddrPortFrom(peer.Agent.Host.Addr, uint16(peer.Status(t).Self.ListenPort)).String()
		meshlab.Eventually(t, pathDeadline, self.Hostname()+" reaching "+peer.Hostname()+" on the LAN", func() error {
			st, err := self.Agent.StatusCLI(ctx, lab.Mesh.Bin)
			if err != nil {
				return err
			}
			p, err := meshlab.PeerNamed(st, peer.Hostname())
			if err != nil {
				return err
			}
			if p.Path != "direct" || p.Endpoint != lan {
				return fmt.Errorf("%s on %q at %q, want direct at its LAN address %s", peer.Hostname(), p.Path, p.Endpoint, lan)
			}
			return nil
		})
	}
}

// roamDeadline bounds a NATed laptop's recovery after its router's public
// address changes (issue 14's goal is 5 s; netbench measures it).
const roamDeadline = 30 * time.Second

// TestRouterRoaming: a laptop behind an endpoint-independent NAT router
// talks to a public agent; the router's public address changes (the ISP
// readdresses it: every mapping is lost). The laptop's agent rediscovers
// its reflexive address and traffic resumes within roamDeadline, polled,
// without re-enrolling (the same device ID and certificate serial), and
// the public peer ends on a direct path at the router's new address.
func TestRouterRoaming(t *testing.T) {
	lab, ctx := natLab(t, 2*time.Minute)
	h, err := lab.Mesh.Place(ctx, "laptop", e2e.EIMNAT)
	if err != nil {
		t.Fatal(err)
	}
	laptop := lab.JoinOn(t, h, meshlab.NodeOptions{}, lab.Mesh.STUNArgs()...).(*meshlab.NetNSNode)
	pub := lab.Join(t, "pub", meshlab.NodeOptions{}).(*meshlab.NetNSNode)
	meshlab.ServeEcho(t, pub, 7000)
	meshlab.ServeEcho(t, laptop, 7000)
	firstContact(t, route{laptop, pub, 7000}, route{pub, laptop, 7000})
	before := laptop.Status(t).Self

	start := time.Now()
	moved, err := h.Router().Readdress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	meshlab.Eventually(t, roamDeadline, "traffic both ways after the router moved", func() error {
		if err := (route{laptop, pub, 7000}).reach(ctx, time.Second); err != nil {
			return err
		}
		return (route{pub, laptop, 7000}).reach(ctx, time.Second)
	})
	t.Logf("traffic resumed %s after the router moved to %s", time.Since(start).Round(time.Millisecond), moved)
	meshlab.Eventually(t, pathDeadline, "the public peer on a direct path at the router's new address", func() error {
		st, err := pub.Agent.StatusCLI(ctx, lab.Mesh.Bin)
		if err != nil {
			return err
		}
		p, err := meshlab.PeerNamed(st, laptop.Hostname())
		if err != nil {
			return err
		}
		if ap, err := netip.ParseAddrPort(p.Endpoint); p.Path != "direct" || err != nil || ap.Addr() != moved {
			return fmt.Errorf("the laptop on %q at %q, want direct at %s", p.Path, p.Endpoint, moved)
		}
		return nil
	})
	after := laptop.Status(t).Self
	if after.DeviceID != before.DeviceID || after.CertSerial != before.CertSerial {
		t.Errorf("the laptop re-enrolled: device %s serial %s, was %s %s", after.DeviceID, after.CertSerial, before.DeviceID, before.CertSerial)
	}
}
