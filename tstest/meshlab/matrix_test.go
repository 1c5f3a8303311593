package meshlab_test

import (
	"testing"

	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/netns"
)

// TestPathMatrix: parts of issue 14's NAT matrix beyond TestNATDirectPaths,
// each its own lab: two agents at each placement listed, each NATed one
// behind a router of its own, all on STUN from the server's embedded
// responder. Every pair reaches each other through the tunnel and each
// status shows each peer on the path expectedPath requires: symmetric <->
// public direct; symmetric <-> symmetric, symmetric <-> EIM and
// UDP-blocked <-> anything over the embedded relay (red before the path
// layer's fix: an EIM agent that first heard a symmetric peer's pings
// from the peer's relay allocation called the path to it "direct").
func TestPathMatrix(t *testing.T) {
	netns.RequireCommands(t, "nft")
	for _, at := range [][]e2e.Placement{
		{e2e.Public, e2e.SymmetricNAT},
		{e2e.Public, e2e.UDPBlocked},
		{e2e.EIMNAT, e2e.SymmetricNAT},
	} {
		t.Run(string(at[0])+"+"+string(at[1]), func(t *testing.T) {
			t.Parallel()
			lab := meshlab.NewNetNS(t, meshlab.Options{})
			checkMatrix(t, lab, placeAll(t, lab, at))
		})
	}
}
