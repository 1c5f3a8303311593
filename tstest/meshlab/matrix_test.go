package meshlab_test

import (
	"testing"

	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/netns"
)

// TestPathMatrix: issue 14's NAT matrix beyond TestNATDirectPaths (public
// and EIM NAT), each row its own lab: two agents at each placement listed,
// each NATed one behind a router of its own, all on STUN from the server's
// embedded responder. With TestNATDirectPaths every pair of {public, EIM
// NAT, symmetric NAT, UDP blocked}, a placement with itself included, is
// covered. Every pair reaches each other through the tunnel and each
// status shows each peer on the path expectedPath requires: symmetric <->
// public direct (the symmetric side's mapping is learned from its
// authenticated probe), symmetric <-> symmetric, symmetric <-> EIM and
// UDP-blocked <-> anything over the embedded relay (the symmetric rows
// were red, intermittently under load, while a path to a peer's relay
// allocation at the server's address counted as direct).
func TestPathMatrix(t *testing.T) {
	netns.RequireCommands(t, "nft")
	for _, at := range [][]e2e.Placement{
		{e2e.Public, e2e.UDPBlocked},
		{e2e.Public, e2e.SymmetricNAT},
		{e2e.EIMNAT, e2e.SymmetricNAT},
		{e2e.EIMNAT, e2e.UDPBlocked},
		{e2e.SymmetricNAT, e2e.UDPBlocked},
	} {
		t.Run(string(at[0])+"+"+string(at[1]), func(t *testing.T) {
			t.Parallel()
			lab := meshlab.NewNetNS(t, meshlab.Options{})
			checkMatrix(t, lab, placeAll(t, lab, at))
		})
	}
}
