package policy

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/certmesh/certmesh/certs"
)

// mayRouteReference is the plain meaning of MayRoute: some rule whose
// from selects self, whose condition holds and which has ports, has an
// address or CIDR destination with an address inside p that router's
// certificate routes.
func mayRouteReference(p *Policy, self, router certs.Identity, pfx netip.Prefix) bool {
	gi := newGroupIndex(p.Groups)
	for _, r := range p.Rules {
		if len(r.Ports) == 0 || !r.When.holds(&self) || !slices.ContainsFunc(r.From, func(s Selector) bool { return gi.matches(s, &self) }) {
			continue
		}
		for _, s := range r.To {
			for _, rt := range router.Routes {
				if s.Kind == SelectPrefix && s.Prefix.Overlaps(pfx) && s.Prefix.Overlaps(rt) && rt.Overlaps(pfx) {
					return true // nested prefixes: all three overlap in the narrowest
				}
			}
		}
	}
	return false
}

const mayRoutePolicy = `{
	"tagOwners": {"tag:ops": [], "tag:lan": []},
	"rules": [
		{"name": "ops to the printers", "from": ["tag:ops"],  "to": ["10.20.0.0/28"],   "ports": ["tcp:631"]},
		{"name": "ops to one host",     "from": ["tag:ops"],  "to": ["10.30.0.7"],      "ports": ["icmp"]},
		{"name": "everyone to mesh",    "from": ["*"],        "to": ["*", "tag:lan"],   "ports": ["*"]},
		{"name": "tpm ops to the lab",  "from": ["tag:ops"],  "to": ["10.40.0.0/16"],   "ports": ["*"], "when": {"attestation": "tpm"}},
		{"name": "ops, services only",  "from": ["tag:ops"],  "to": ["svc:ssh"]},
		{"name": "others to the web",   "from": ["tag:lan"],  "to": ["0.0.0.0/0"],      "ports": ["tcp:443"]},
	],
}`

// TestMayRoute: a rule reaching part of a prefix lets the node route it
// (a /28 inside a /24, a single address); no rule, a rule for another
// source, a rule whose condition the node fails, a service rule,
// mesh-only destinations ("*", tags) and a prefix outside the router's
// certified routes do not.
func TestMayRoute(t *testing.T) {
	c := mustCompile(t, mayRoutePolicy)
	ops := id("tags=ops", "addrs=100.64.0.1")
	opsTPM := id("tags=ops", "addrs=100.64.0.1", "att=tpm")
	plain := id("addrs=100.64.0.2")
	router := id("host=router", "routes=10.20.0.0/24,10.30.0.0/24,10.40.0.0/16,10.50.0.0/24,192.168.0.0/16,0.0.0.0/0")
	narrow := id("host=narrow", "routes=10.20.0.0/29")
	pfx := netip.MustParsePrefix
	for _, tc := range []struct {
		name   string
		self   certs.Identity
		router certs.Identity
		p      netip.Prefix
		want   bool
	}{
		{"rule covers part of the LAN", ops, router, pfx("10.20.0.0/24"), true},
		{"rule covers all of a smaller prefix", ops, router, pfx("10.20.0.8/29"), true},
		{"rule to a single address inside", ops, router, pfx("10.30.0.0/24"), true},
		{"rule for another source", plain, router, pfx("10.20.0.0/24"), false},
		{"no rule for the prefix", ops, router, pfx("192.168.0.0/16"), false},
		{"condition not met", ops, router, pfx("10.40.0.0/16"), false},
		{"condition met", opsTPM, router, pfx("10.40.0.0/16"), true},
		{"only a service rule", ops, router, pfx("10.50.0.0/24"), false},
		{"default route: a rule inside it", ops, router, pfx("0.0.0.0/0"), true},
		{"default route: mesh rules only", plain, router, pfx("0.0.0.0/0"), false},
		{"not where the router routes", ops, narrow, pfx("10.20.0.8/29"), false},
		{"where the router routes, inside a wider prefix", ops, narrow, pfx("10.20.0.0/24"), true},
		{"router certified for nothing", ops, id("host=none"), pfx("10.20.0.0/24"), false},
		{"ipv6 default route", ops, id("routes=::/0"), pfx("::/0"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.ForNode(tc.self).MayRoute(tc.router, tc.p); got != tc.want {
				t.Fatalf("MayRoute(%s via %s) = %v, want %v", tc.p, tc.router.Hostname, got, tc.want)
			}
		})
	}
	var none *Compiled
	if none.ForNode(ops).MayRoute(router, pfx("10.20.0.0/24")) {
		t.Fatal("no policy held, yet a route is allowed")
	}
	if mustCompile(t, `{}`).ForNode(ops).MayRoute(router, pfx("10.20.0.0/24")) {
		t.Fatal("a policy with no rules allows a route")
	}
}

// TestMayRouteAgreesWithDecideRouted: MayRoute holds exactly when the
// router's DecideRouted accepts some packet from the node into the prefix
// (probed at every address and port a rule could single out here).
func TestMayRouteAgreesWithDecideRouted(t *testing.T) {
	pol, err := Parse([]byte(mayRoutePolicy))
	if err != nil {
		t.Fatal(err)
	}
	c := pol.Compile()
	router := id("routes=10.20.0.0/24,10.30.0.0/24,10.40.0.0/16,10.50.0.0/24")
	probes := []netip.Addr{netip.MustParseAddr("10.20.0.1"), netip.MustParseAddr("10.20.0.200"), netip.MustParseAddr("10.30.0.7"),
		netip.MustParseAddr("10.30.0.8"), netip.MustParseAddr("10.40.3.3"), netip.MustParseAddr("10.50.0.1")}
	for _, self := range []certs.Identity{id("tags=ops"), id("tags=ops", "att=tpm"), id("tags=lan"), id()} {
		for _, p := range router.Routes {
			some := false
			for _, a := range probes {
				for _, pp := range []struct {
					proto Proto
					port  uint16
				}{{ProtoTCP, 631}, {ProtoTCP, 443}, {ProtoICMP, 0}, {ProtoUDP, 9}} {
					some = some || (p.Contains(a) && c.DecideRouted(self, router, a, pp.proto, pp.port).Accept)
				}
			}
			if got := c.ForNode(self).MayRoute(router, p); got != some || got != mayRouteReference(pol, self, router, p) {
				t.Fatalf("%v via %s: MayRoute %v, DecideRouted accepts some packet %v", self.Tags, p, got, some)
			}
		}
	}
}
