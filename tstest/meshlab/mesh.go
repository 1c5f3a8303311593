package meshlab

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/e2e"
)

// CheckPeers returns nil if n's status lists exactly the nodes want as
// verified peers, each with the key and addresses it was certified with,
// refuses nobody, and n's WireGuard device holds exactly their keys.
func CheckPeers(t testing.TB, n Node, want ...Node) error {
	t.Helper()
	ws := make([]e2e.Want, 0, len(want))
	keys := make([]certs.WireGuardKey, 0, len(want))
	for _, w := range want {
		ws = append(ws, e2e.Want{Name: w.Hostname(), ID: w.DeviceID(), Key: w.WireGuardKey(), Addrs: w.Addrs()})
		keys = append(keys, w.WireGuardKey())
	}
	if err := e2e.CheckPeerSet(n.Status(t), ws, false); err != nil {
		return err
	}
	got := n.WireGuardPeers(t)
	cmp := func(a, b certs.WireGuardKey) int { return slices.Compare(a[:], b[:]) }
	slices.SortFunc(got, cmp)
	slices.SortFunc(keys, cmp)
	if !slices.Equal(got, keys) {
		return fmt.Errorf("%s: WireGuard device has peers %v, want %v", n.Hostname(), got, keys)
	}
	return nil
}

// WaitMesh waits until every node has exactly the others as peers
// ([CheckPeers]).
func WaitMesh(t testing.TB, timeout time.Duration, nodes ...Node) {
	t.Helper()
	Eventually(t, timeout, "the mesh to converge", func() error {
		var errs []error
		for _, n := range nodes {
			others := slices.DeleteFunc(slices.Clone(nodes), func(o Node) bool { return o == n })
			errs = append(errs, CheckPeers(t, n, others...))
		}
		return errors.Join(errs...)
	})
}

// SameAddrs reports whether a and b hold the same addresses, in any order.
var SameAddrs = e2e.SameAddrs

// WaitBack waits until every node's watch opened on the coordinator after
// since and it holds exactly the other nodes, every one listed by the
// coordinator again (none held as unlisted).
func WaitBack(t testing.TB, timeout time.Duration, since time.Time, nodes ...Node) {
	t.Helper()
	Eventually(t, timeout, "every agent to be back on the server", func() error {
		var errs []error
		for _, n := range nodes {
			st := n.Status(t)
			if c := st.Coordinator; !c.Connected || !c.ConnectedSince.After(since) {
				errs = append(errs, fmt.Errorf("%s: watch not back yet (connected %v since %v): %s", n.Hostname(), c.Connected, c.ConnectedSince, c.LastError))
				continue
			}
			for _, p := range st.Peers {
				if !p.UnlistedSince.IsZero() {
					errs = append(errs, fmt.Errorf("%s: peer %s not listed again yet", n.Hostname(), p.Hostname))
				}
			}
			others := slices.DeleteFunc(slices.Clone(nodes), func(o Node) bool { return o == n })
			errs = append(errs, CheckPeers(t, n, others...))
		}
		return errors.Join(errs...)
	})
}
