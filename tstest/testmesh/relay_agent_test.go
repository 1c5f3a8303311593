package testmesh_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/meshlab"
)

// TestAgentAdvertisesRelayCandidate: with nothing configured, real agents
// fetch relay credentials from the server that embeds the relay, allocate
// on it, show the allocation in status, and sign the relayed address into
// their endpoint advertisement: the peer, which takes candidates only from
// a verified advertisement, lists it.
func TestAgentAdvertisesRelayCandidate(t *testing.T) {
	t.Parallel()
	m := meshlab.NewInProc(t, meshlab.InProcOptions{})
	if m.Server.Relay == nil {
		t.Fatal("certmesh-server runs no relay by default")
	}
	a, b := m.AddNode(t, "a", meshlab.NodeOptions{}), m.AddNode(t, "b", meshlab.NodeOptions{})
	for _, pair := range [][2]*meshlab.InProcNode{{a, b}, {b, a}} {
		n, peer := pair[0], pair[1]
		meshlab.Eventually(t, 30*time.Second, n.Name+"'s relay candidate at "+peer.Name, func() error {
			st := n.Status(t)
			if st.Relay == nil {
				return errors.New("status shows no relay client")
			}
			if !st.Relay.Relayed.IsValid() {
				return fmt.Errorf("no relay allocation yet (%+v)", *st.Relay)
			}
			p, err := meshlab.PeerNamed(peer.Status(t), n.Name)
			if err != nil {
				return err
			}
			if !slices.Contains(p.Candidates, st.Relay.Relayed) {
				return fmt.Errorf("%s's verified candidates of %s are %v, without its relayed address %v", peer.Name, n.Name, p.Candidates, st.Relay.Relayed)
			}
			return nil
		})
	}
}
