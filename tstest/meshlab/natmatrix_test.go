package meshlab_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/netns"
)

// pathDeadline bounds the wait, after every pair exchanged data, for each
// agent's status to show every peer on its expected path (issue 14's goals
// are seconds; the bound is generous because the lab shares two cores).
const pathDeadline = 45 * time.Second

// placed is an agent at a placement of the NAT matrix.
type placed struct {
	node *meshlab.NetNSNode
	at   e2e.Placement
}

// placeAll runs two agents at each placement (so that every pair of
// placements, a placement with itself included, has two distinct agents),
// each NATed one behind a router of its own, all asking the server's
// embedded STUN responder for their public address.
func placeAll(t *testing.T, lab *meshlab.NetNSLab, at []e2e.Placement) []placed {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var (
		mu  sync.Mutex
		out []placed
		wg  sync.WaitGroup
	)
	for _, p := range at {
		for i := 1; i <= 2; i++ {
			name := fmt.Sprintf("%s%d", strings.ReplaceAll(string(p), "-nat", ""), i)
			h, err := lab.Mesh.Place(ctx, name, p)
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				n := lab.JoinOn(t, h, meshlab.NodeOptions{}, lab.Mesh.STUNArgs()...).(*meshlab.NetNSNode)
				mu.Lock()
				out = append(out, placed{n, p})
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return out
}

// expectedPath is the path issue 14 requires between placements a and b:
// direct where hole punching can work (neither side symmetric or
// UDP-blocked, or a symmetric host talking to a public one, which learns
// its mapped address from its authenticated probe), the relay otherwise.
func expectedPath(a, b e2e.Placement) string {
	punchable := func(p e2e.Placement) bool { return p == e2e.Public || p == e2e.EIMNAT }
	switch {
	case punchable(a) && punchable(b):
		return "direct"
	case a == e2e.Public && b == e2e.SymmetricNAT, b == e2e.Public && a == e2e.SymmetricNAT:
		return "direct"
	}
	return "relay"
}

// checkMatrix waits until every agent reaches every other through the
// tunnel (a TCP exchange) and `certmesh status --json` on each shows each
// peer on the path expectedPath says.
func checkMatrix(t *testing.T, lab *meshlab.NetNSLab, nodes []placed) {
	t.Helper()
	var routes []route
	for _, n := range nodes {
		meshlab.ServeEcho(t, n.node, 7000)
	}
	for _, a := range nodes {
		for _, b := range nodes {
			if a.node != b.node {
				routes = append(routes, route{a.node, b.node, 7000})
			}
		}
	}
	firstContact(t, routes...)
	var wg sync.WaitGroup
	for _, a := range nodes {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), pathDeadline)
			defer cancel()
			var last error
			err := netns.WaitFor(ctx, 250*time.Millisecond, func() error {
				st, err := a.node.Agent.StatusCLI(ctx, lab.Mesh.Bin)
				if err != nil {
					return err
				}
				last = pathsAsExpected(st, a, nodes)
				return last
			})
			if err != nil {
				t.Errorf("%s (%s): %v", a.node.Hostname(), a.at, err)
			}
		})
	}
	wg.Wait()
}

// pathsAsExpected says which of a's peers are not on their expected path.
func pathsAsExpected(st *agent.Status, a placed, nodes []placed) error {
	var bad []string
	for _, b := range nodes {
		if b.node == a.node {
			continue
		}
		want := expectedPath(a.at, b.at)
		p, err := meshlab.PeerNamed(st, b.node.Hostname())
		if err != nil {
			return err
		}
		if p.Path != want {
			bad = append(bad, fmt.Sprintf("%s (%s) on %q at %q relay %q, want %s", b.node.Hostname(), b.at, p.Path, p.Endpoint, p.Relay, want))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("peers off their path: %s", strings.Join(bad, "; "))
	}
	return nil
}

// TestNATDirectPaths: agents on the public segment and behind
// endpoint-independent NAT routers of their own (two of each) all reach
// each other through the tunnel, and every pair ends on a direct path,
// two EIM-NAT peers included (hole punched through both routers, found
// by STUN against the server's embedded responder).
func TestNATDirectPaths(t *testing.T) {
	t.Parallel()
	netns.RequireCommands(t, "nft")
	lab := meshlab.NewNetNS(t, meshlab.Options{})
	checkMatrix(t, lab, placeAll(t, lab, []e2e.Placement{e2e.Public, e2e.EIMNAT}))
}
