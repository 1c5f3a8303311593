package meshlab_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/netns"
)

// TestRelayPathBetweenSymmetricNATs: two laptops, each behind its own
// symmetric NAT router, cannot reach each other directly (neither's local
// address routes, and neither's reflexive address admits the other). With
// nothing configured their agents allocate on the server's embedded relay,
// sign the relayed address as a candidate, and the mesh traffic between
// them flows through the relay: status shows path "relay" both ways, and
// `wg show` lists each as the other's peer.
func TestRelayPathBetweenSymmetricNATs(t *testing.T) {
	lab, ctx := natLab(t, time.Minute)
	var nodes []meshlab.Node
	for i, name := range []string{"carrier1", "carrier2"} {
		router, err := lab.Mesh.Net.AddRouter(ctx, name, netns.RouterOptions{Mapping: netns.Symmetric,
			LAN: netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/24", 64+i))})
		if err != nil {
			t.Fatal(err)
		}
		h, err := router.AddHost(ctx, "laptop-"+name)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, lab.JoinOn(t, h, meshlab.NodeOptions{}))
	}
	meshlab.ServeEcho(t, nodes[1], 7000)
	meshlab.ServeEcho(t, nodes[0], 7000)
	firstContact(t, route{nodes[0], nodes[1], 7000}, route{nodes[1], nodes[0], 7000})
	for i, n := range nodes {
		peer := nodes[1-i]
		meshlab.Eventually(t, 30*time.Second, n.Hostname()+" on the relay path to "+peer.Hostname(), func() error {
			p, err := meshlab.PeerNamed(n.Status(t), peer.Hostname())
			if err != nil {
				return err
			}
			if p.Path != "relay" || p.Relay == "" {
				return fmt.Errorf("path %q via %q (endpoint %s, candidates %v), want \"relay\"", p.Path, p.Relay, p.Endpoint, p.Candidates)
			}
			return nil
		})
	}
	firstContact(t, route{nodes[0], nodes[1], 7000}, route{nodes[1], nodes[0], 7000})
	// `wg show` reads the relayed peers (it crashed, SIGSEGV, when the
	// UAPI named the endpoint "relay:1:ip:port").
	meshlab.WaitMesh(t, 10*time.Second, nodes...)
}
