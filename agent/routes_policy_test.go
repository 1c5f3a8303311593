package agent

import (
	"slices"
	"testing"

	"github.com/certmesh/certmesh/policy"
)

// routePolicy compiles src for the harness's own node.
func (rh *routeHarness) routePolicy(t *testing.T, src string) *policy.Node {
	t.Helper()
	pol, err := policy.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return pol.Compile().ForNode(rh.m.self)
}

// TestRouteNeedsPolicy: a route the router's certificate carries and it
// serves is installed only while the policy lets this node reach
// something inside it through that router. With no policy held, or one
// whose rules reach only mesh nodes or are for another source, nothing
// is in the router's AllowedIPs or the host's routes and the refusal is
// counted (route-not-allowed); a policy allowing it installs it without a
// new relay, and a narrowed one takes it away again.
func TestRouteNeedsPolicy(t *testing.T) {
	rh := newRouteHarness(t, true)
	rh.routes.setPolicy(nil) // as the agent starts: no policy held
	r, w := rh.router(t, "router", []string{"10.20.0.0/24"}, "10.20.0.0/24")
	rh.v.handle(upsert(w))
	none := func(when string) {
		t.Helper()
		if got := rh.allowed(t, r); len(got) != 0 || len(rh.kernel.routes()) != 0 {
			t.Fatalf("%s: router's routed AllowedIPs %v, host routes %v, want none", when, got, rh.kernel.routes())
		}
		if st, _, _ := rh.routes.status(); len(st.Installed) != 0 {
			t.Fatalf("%s: installed %+v", when, st.Installed)
		}
		if _, ok := rh.plane.get(r.WireGuardKey); !ok {
			t.Fatalf("%s: the router itself was dropped", when)
		}
	}
	none("no policy")
	_, rej, counts := rh.routes.status()
	if counts[ReasonRouteNotAllowed] != 1 || len(rej) != 1 || rej[0].Reason != ReasonRouteNotAllowed {
		t.Fatalf("refusals %v %v, want one route-not-allowed", counts, rej)
	}

	for _, src := range []string{
		`{"rules": [{"from": ["*"], "to": ["*"], "ports": ["*"]}]}`,                                                    // mesh nodes only
		`{"tagOwners": {"tag:other": []}, "rules": [{"from": ["tag:other"], "to": ["10.20.0.0/24"], "ports": ["*"]}]}`, // another source
		`{"rules": [{"from": ["*"], "to": ["10.21.0.0/24"], "ports": ["*"]}]}`,                                         // another LAN
	} {
		rh.routes.setPolicy(rh.routePolicy(t, src))
		none(src)
	}

	rh.routes.setPolicy(rh.routePolicy(t, `{"rules": [{"from": ["*"], "to": ["10.20.0.0/28"], "ports": ["tcp:631"]}]}`))
	if got := rh.allowed(t, r); !slices.Equal(got, prefixes(lanA)) {
		t.Fatalf("allowed by the new policy: router's routed AllowedIPs %v, want %v", got, lanA)
	}
	if got := rh.kernel.routes(); !slices.Equal(got, prefixes(lanA)) {
		t.Fatalf("allowed by the new policy: host routes %v, want %v", got, lanA)
	}
	if st, _, _ := rh.routes.status(); len(st.Installed) != 1 || st.Installed[0].Via != r.DeviceID {
		t.Fatalf("installed %+v", st.Installed)
	}
	rh.v.handle(upsert(w)) // relayed again: it stays
	if got := rh.allowed(t, r); !slices.Equal(got, prefixes(lanA)) {
		t.Fatalf("relayed again: %v", got)
	}

	rh.routes.setPolicy(rh.routePolicy(t, `{"rules": [{"from": ["*"], "to": ["*", "10.21.0.0/24"], "ports": ["*"]}]}`))
	none("narrowed policy")
	rh.v.handle(upsert(w))
	none("narrowed policy, relayed again")
}
