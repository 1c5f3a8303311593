package testmesh_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
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

// TestAgentWithoutRelay: a server with its relay disabled offers no relay
// credentials; the agent runs without a relay client (none in status),
// says so once, and still joins the mesh.
func TestAgentWithoutRelay(t *testing.T) {
	t.Parallel()
	m := meshlab.NewInProc(t, meshlab.InProcOptions{Config: func(cfg *ca.Config, _ string) {
		cfg.Relay = &ca.RelayConfig{Disabled: true}
	}})
	a, b := m.AddNode(t, "a", meshlab.NodeOptions{}), m.AddNode(t, "b", meshlab.NodeOptions{})
	meshlab.WaitMesh(t, 30*time.Second, a, b)
	if st := a.Status(t); st.Relay != nil {
		t.Fatalf("status shows a relay client on a server without relay: %+v", *st.Relay)
	}
	if n := strings.Count(a.Logs.String(), "the CA offers no relay"); n != 1 {
		t.Fatalf("the agent said %d times that the CA offers no relay, want once:\n%s", n, a.Logs.String())
	}
}
