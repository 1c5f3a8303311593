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

// upgradeBound bounds the move from relay to direct once UDP passes: a
// relayed pair probes its direct candidates every 5 s (agent/path
// Timers.Upgrade); the rest is slack for a loaded machine.
const upgradeBound = 15 * time.Second

// TestRelayUpgradesToDirect: a laptop behind a router that blocks UDP
// reaches a public peer over the server's embedded relay (TURN over TLS,
// UDP being blocked). When the router lifts the block at run time (its
// nft ruleset replaced), the pair moves to a direct path within
// upgradeBound, both ways, without a restart, and the tunnel still
// carries traffic.
func TestRelayUpgradesToDirect(t *testing.T) {
	lab, ctx := natLab(t, 2*time.Minute)
	office, err := lab.Mesh.Place(ctx, "office", e2e.Public)
	if err != nil {
		t.Fatal(err)
	}
	router, err := lab.Mesh.Net.AddRouter(ctx, "hotel-gw", netns.RouterOptions{BlockUDP: true,
		LAN: netip.MustParsePrefix("10.80.0.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	laptop, err := router.AddHost(ctx, "laptop")
	if err != nil {
		t.Fatal(err)
	}
	nodes := []meshlab.Node{
		lab.JoinOn(t, office, meshlab.NodeOptions{}, lab.Mesh.STUNArgs()...),
		lab.JoinOn(t, laptop, meshlab.NodeOptions{}, lab.Mesh.STUNArgs()...),
	}
	meshlab.ServeEcho(t, nodes[0], 7000)
	meshlab.ServeEcho(t, nodes[1], 7000)
	routes := []route{{nodes[0], nodes[1], 7000}, {nodes[1], nodes[0], 7000}}
	firstContact(t, routes...)
	waitPaths(t, pathDeadline, "relay", nodes...)

	if err := router.SetBlockUDP(ctx, false); err != nil {
		t.Fatal(err)
	}
	lifted := time.Now()
	waitPaths(t, upgradeBound, "direct", nodes...)
	t.Logf("both ways direct %v after the block was lifted", time.Since(lifted).Round(time.Millisecond))
	firstContact(t, routes...)
}

// waitPaths waits until each node's status shows every other node on
// path want.
func waitPaths(t *testing.T, bound time.Duration, want string, nodes ...meshlab.Node) {
	t.Helper()
	for _, n := range nodes {
		for _, peer := range nodes {
			if peer == n {
				continue
			}
			meshlab.Eventually(t, bound, n.Hostname()+" on path "+want+" to "+peer.Hostname(), func() error {
				p, err := meshlab.PeerNamed(n.Status(t), peer.Hostname())
				if err != nil {
					return err
				}
				if p.Path != want {
					return fmt.Errorf("path %q at %q (relay %q)", p.Path, p.Endpoint, p.Relay)
				}
				return nil
			})
		}
	}
}
