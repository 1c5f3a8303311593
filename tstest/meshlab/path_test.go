package meshlab_test

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/meshlab"
)

// TestPathLayerFindsDirectPaths: real agents probe each other's signed
// candidates and each shows every peer on a direct path, at one of the
// peer's candidates, with a probe RTT (certmesh status --json's "path").
func TestPathLayerFindsDirectPaths(t *testing.T) {
	meshlab.ForEachBackend(t, meshlab.Options{}, func(t *testing.T, lab meshlab.Lab) {
		nodes := []meshlab.Node{lab.Join(t, "p1", meshlab.NodeOptions{}), lab.Join(t, "p2", meshlab.NodeOptions{})}
		meshlab.WaitMesh(t, 30*time.Second, nodes...)
		for _, n := range nodes {
			deadline := time.Now().Add(20 * time.Second)
			for {
				st := n.Status(t)
				ok := len(st.Peers) == 1
				for _, p := range st.Peers {
					ok = ok && p.Path == "direct" && p.RTTMillis > 0 && p.Relay == "" &&
						slices.ContainsFunc(p.Candidates, func(c netip.AddrPort) bool { return c.String() == p.Endpoint })
				}
				if ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: peers %+v, want one on a direct path at one of its candidates", n.Hostname(), st.Peers)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	})
}
