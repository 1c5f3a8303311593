package meshlab_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/netns"
)

// TestJoinBehindNAT: the NetNS backend places agents where a scenario
// needs them. A laptop behind an endpoint-independent NAT router and one
// behind a symmetric NAT router both enroll through the server on the
// public side and reach a public agent over the mesh (they initiate; the
// routers let the replies back in). NAT traversal between two NATed
// agents is the path layer's (issue 14).
func TestJoinBehindNAT(t *testing.T) {
	t.Parallel()
	netns.RequireCommands(t, "nft")
	lab := meshlab.NewNetNS(t, meshlab.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	pub := lab.Join(t, "pub", meshlab.NodeOptions{})
	var nated []meshlab.Node
	for _, r := range []struct {
		name string
		opts netns.RouterOptions
	}{
		{"home", netns.RouterOptions{Mapping: netns.EndpointIndependent}},
		{"carrier", netns.RouterOptions{Mapping: netns.Symmetric, LAN: netip.MustParsePrefix("10.64.0.0/24")}},
	} {
		router, err := lab.Mesh.Net.AddRouter(ctx, r.name, r.opts)
		if err != nil {
			t.Fatal(err)
		}
		h, err := router.AddHost(ctx, "laptop-"+r.name)
		if err != nil {
			t.Fatal(err)
		}
		nated = append(nated, lab.JoinOn(t, h, meshlab.NodeOptions{}))
	}
	meshlab.ServeEcho(t, pub, 7000)
	var routes []route
	for _, n := range nated {
		if st := n.Status(t); len(st.Self.Addresses) == 0 {
			t.Fatalf("%s has no overlay address", n.Hostname())
		}
		routes = append(routes, route{n, pub, 7000})
	}
	firstContact(t, routes...)
}
