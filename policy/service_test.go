package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/certs"
)

func TestParseServiceSelectors(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []wantProblem
	}{
		{"service as a source", wrap(`{"from": ["svc:ssh"], "to": ["*"], "ports": ["*"]}`),
			[]wantProblem{{at: `"svc:ssh"`, msg: `"from": "svc:ssh" is not allowed here (svc:NAME is a destination`}}},
		{"service with a port", wrap(`{"from": ["*"], "to": ["svc:ssh:22"]}`),
			[]wantProblem{{at: `"svc:ssh:22"`, msg: `write svc:NAME alone; the port and protocol are the ones the device's certificate gives`}}},
		{"service with a protocol", wrap(`{"from": ["*"], "to": ["svc:dns/udp"]}`),
			[]wantProblem{{at: `"svc:dns/udp"`, msg: `invalid service "svc:dns/udp": write svc:NAME alone`}}},
		{"bad service names", wrap(`{"from": ["*"], "to": ["svc:SSH", "svc:", "svc:a--b", "svc:1234", "svc:abcdefghijklmnop"]}`),
			[]wantProblem{
				{at: `"svc:SSH"`, msg: `invalid service "svc:SSH": service name "SSH": want lower-case letters`},
				{at: `"svc:"`, after: `"svc:SSH", `, msg: `want 1 to 15 characters`},
				{at: `"svc:a--b"`, msg: `single inner hyphens`},
				{at: `"svc:1234"`, msg: `has no letter`},
				{at: `"svc:abcdefghijklmnop"`, msg: `want 1 to 15 characters`},
			}},
		{"ports with only services", wrap(`{"from": ["*"], "to": ["svc:ssh", "svc:web"], "ports": ["tcp:22"]}`),
			[]wantProblem{{at: `["tcp:22"]`, msg: `rules[0]: "ports" does not apply to svc:NAME destinations, which are reached at the port and protocol their certificates give`}}},
		{"no ports beside a service", wrap(`{"from": ["*"], "to": ["svc:ssh", "tag:db"]}`),
			[]wantProblem{{at: `{"from"`, msg: `rules[0] has no "ports" (only a rule whose every destination is svc:NAME may omit it)`}}},
		{"service as a group member", `{"groups": {"group:a": ["svc:ssh"]}}`,
			[]wantProblem{{at: `"svc:ssh"`, msg: `members of "group:a": "svc:ssh" is not allowed here`}}},
		{"service as a tag owner", `{"tagOwners": {"tag:a": ["svc:ssh"]}}`,
			[]wantProblem{{at: `"svc:ssh"`, msg: `owners of "tag:a": "svc:ssh" is not allowed here`}}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkProblems(t, tc.src, tc.want) })
	}
	pol, err := Parse([]byte(wrap(`{"from": ["*"], "to": ["svc:ssh"]}, {"from": ["*"], "to": ["svc:dns", "tag:db"], "ports": ["tcp:5432"]}`)))
	if err != nil {
		t.Fatal(err)
	}
	if r := pol.Rules[0]; len(r.To) != 1 || r.To[0].Kind != SelectService || r.To[0].String() != "svc:ssh" || r.Ports != nil {
		t.Fatalf("rule 0 = %+v", r)
	}
	if r := pol.Rules[1]; len(r.To) != 2 || r.To[0].String() != "svc:dns" || len(r.Ports) != 1 {
		t.Fatalf("rule 1 = %+v", r)
	}
}

const servicePolicy = `{
	"tagOwners": {"tag:db": [], "tag:laptop": []},
	"rules": [
		{"name": "ssh anywhere it is offered", "from": ["tag:laptop"], "to": ["svc:ssh"]},
		{"name": "dns", "from": ["*"], "to": ["svc:dns"]},
		{"name": "db and its metrics", "from": ["tag:laptop"], "to": ["tag:db", "svc:metrics"], "ports": ["tcp:5432"]},
		{"name": "lan ssh", "from": ["tag:laptop"], "to": ["10.0.0.0/24", "2001:db8:1::/48"], "ports": ["tcp:22"]},
		{"name": "one lan printer", "from": ["*"], "to": ["10.0.0.9"], "ports": ["tcp:631"]},
		{"name": "everyone everywhere on icmp", "from": ["*"], "to": ["*"], "ports": ["icmp"]},
		{"name": "web through the exit", "from": ["tag:laptop"], "to": ["0.0.0.0/0", "::/0"], "ports": ["tcp:443"]},
	],
}`

// TestServiceDestinations: svc:NAME selects exactly the nodes whose
// certificate offers NAME, at the port and protocol the certificate gives;
// a node without it in its certificate is not selected, whatever port it
// listens on, and the rule's ports do not widen a service.
func TestServiceDestinations(t *testing.T) {
	c := mustCompile(t, servicePolicy)
	laptop := id("tags=laptop")
	for _, tc := range []struct {
		name  string
		src   certs.Identity
		dst   certs.Identity
		proto Proto
		port  uint16
		rule  int
	}{
		{"ssh at the certified port", laptop, id("host=a", "svcs=ssh:22"), ProtoTCP, 22, 0},
		{"ssh at another certified port", laptop, id("host=a", "svcs=ssh:2222"), ProtoTCP, 2222, 0},
		{"not at the usual port when certified elsewhere", laptop, id("host=a", "svcs=ssh:2222"), ProtoTCP, 22, -1},
		{"not over the other protocol", laptop, id("host=a", "svcs=ssh:22"), ProtoUDP, 22, -1},
		{"a node whose certificate lacks the service", laptop, id("host=a", "svcs=web:22"), ProtoTCP, 22, -1},
		{"a node with no services", laptop, id("host=a"), ProtoTCP, 22, -1},
		{"only for the rule's sources", id("tags=db"), id("svcs=ssh:22"), ProtoTCP, 22, -1},
		{"dns over udp", id(), id("svcs=dns:53/udp"), ProtoUDP, 53, 1},
		{"dns certified for udp only", id(), id("svcs=dns:53/udp"), ProtoTCP, 53, -1},
		{"dns on both protocols", id(), id("svcs=dns:53/udp,dns:53"), ProtoTCP, 53, 1},
		{"a rule's ports apply to its other destinations", laptop, id("tags=db"), ProtoTCP, 5432, 2},
		{"and not to its services", laptop, id("svcs=metrics:9100"), ProtoTCP, 5432, -1},
		{"the service at its own port", laptop, id("svcs=metrics:9100"), ProtoTCP, 9100, 2},
		{"the tag's node at the service's port", laptop, id("tags=db"), ProtoTCP, 9100, -1},
		{"icmp to a service node", laptop, id("svcs=ssh:22"), ProtoICMP, 0, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := c.Decide(tc.src, tc.dst, tc.proto, tc.port)
			if d.Rule != tc.rule || d.Accept != (tc.rule >= 0) {
				t.Fatalf("Decide = %v, want rule %d", d, tc.rule)
			}
			self := tc.dst
			self.Addresses = []netip.Addr{netip.MustParseAddr("100.64.0.1")}
			if n := c.ForNode(self).Decide(tc.src, tc.proto, tc.port); n != d {
				t.Fatalf("Node.Decide = %v, Decide %v", n, d)
			}
			src := tc.src
			if acc, rule := c.ForNode(self).DecideFunc()(&src, self.Addresses[0], uint8(tc.proto), tc.port); acc != d.Accept || rule != d.Rule {
				t.Fatalf("DecideFunc = %v %d, Decide %v", acc, rule, d)
			}
		})
	}
	only := mustCompile(t, `{"rules": [{"from": ["*"], "to": ["svc:ssh"]}]}`)
	if only.ForNode(id("svcs=web:80")).AcceptsAny() || !only.ForNode(id("svcs=ssh:22")).AcceptsAny() {
		t.Fatal("AcceptsAny with a service rule")
	}
}

// TestRoutedDestinations: traffic a router forwards is decided by its
// destination address against address and CIDR destinations only, and only
// inside the prefixes the router's certificate routes.
func TestRoutedDestinations(t *testing.T) {
	c := mustCompile(t, servicePolicy)
	laptop := id("tags=laptop")
	router := id("host=gw", "addrs=100.64.0.1", "routes=10.0.0.0/24,2001:db8:1::/48", "svcs=ssh:22")
	exit := id("host=exit", "addrs=100.64.0.2", "routes=0.0.0.0/0,::/0")
	a := netip.MustParseAddr
	for _, tc := range []struct {
		name   string
		src    certs.Identity
		router certs.Identity
		dst    netip.Addr
		proto  Proto
		port   uint16
		rule   int
	}{
		{"lan host by the prefix rule", laptop, router, a("10.0.0.5"), ProtoTCP, 22, 3},
		{"IPv6 lan host", laptop, router, a("2001:db8:1::5"), ProtoTCP, 22, 3},
		{"no rule for the port", laptop, router, a("10.0.0.5"), ProtoTCP, 23, -1},
		{"no rule for the source", id("tags=db"), router, a("10.0.0.5"), ProtoTCP, 22, -1},
		{"a single-address rule", id(), router, a("10.0.0.9"), ProtoTCP, 631, 4},
		{"its neighbour", id(), router, a("10.0.0.8"), ProtoTCP, 631, -1},
		{"* does not reach behind a router", id(), router, a("10.0.0.5"), ProtoICMP, 0, -1},
		{"svc:ssh is the router's, not the lan's", laptop, router, a("10.0.0.5"), ProtoTCP, 2222, -1},
		{"not a route of this router", laptop, router, a("10.0.1.5"), ProtoTCP, 22, -1},
		{"a router serving nothing", laptop, id("host=gw", "addrs=100.64.0.1"), a("10.0.0.5"), ProtoTCP, 22, -1},
		{"the exit node to the internet", laptop, exit, a("192.0.2.80"), ProtoTCP, 443, 6},
		{"the exit node to the internet over IPv6", laptop, exit, a("2001:db8:2::80"), ProtoTCP, 443, 6},
		{"the exit node, another port", laptop, exit, a("192.0.2.80"), ProtoTCP, 80, -1},
		{"the exit node to a lan a rule names", laptop, exit, a("10.0.0.5"), ProtoTCP, 22, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := c.DecideRouted(tc.src, tc.router, tc.dst, tc.proto, tc.port)
			if d.Rule != tc.rule || d.Accept != (tc.rule >= 0) {
				t.Fatalf("DecideRouted = %v, want rule %d", d, tc.rule)
			}
			if n := c.ForNode(tc.router).DecideRouted(tc.src, tc.dst, tc.proto, tc.port); n != d {
				t.Fatalf("Node.DecideRouted = %v, DecideRouted %v", n, d)
			}
			src := tc.src
			if acc, rule := c.ForNode(tc.router).DecideFunc()(&src, tc.dst, uint8(tc.proto), tc.port); acc != d.Accept || rule != d.Rule {
				t.Fatalf("DecideFunc = %v %d, DecideRouted %v", acc, rule, d)
			}
		})
	}
	// To the router's own address the router's rules apply, its service too.
	src := laptop
	if acc, rule := c.ForNode(router).DecideFunc()(&src, a("100.64.0.1"), uint8(ProtoTCP), 22); !acc || rule != 0 {
		t.Fatalf("local ssh to the router: %v %d", acc, rule)
	}
	var nilNode *Node
	if nilNode.DecideRouted(laptop, a("10.0.0.5"), ProtoTCP, 22).Accept {
		t.Fatal("nil Node accepts routed traffic")
	}
}

const serviceTestsPolicy = `{
	"tagOwners": {"tag:laptop": [], "tag:router": []},
	"rules": [
		{"name": "ssh", "from": ["tag:laptop"], "to": ["svc:ssh"]},
		{"name": "dns", "from": ["*"], "to": ["svc:dns"]},
		{"name": "lan ssh", "from": ["tag:laptop"], "to": ["10.0.0.0/24"], "ports": ["tcp:22"]},
		{"name": "web via exit", "from": ["tag:laptop"], "to": ["0.0.0.0/0"], "ports": ["tcp:443"]},
	],
	"tests": [
		{"name": "svc string", "from": "tag:laptop", "to": "svc:ssh:22", "expect": "accept"},
		{"name": "svc over udp", "from": "host:x", "to": "svc:dns:53", "proto": "udp", "expect": "accept"},
		{"name": "certified elsewhere", "from": "tag:laptop", "to": {"services": ["ssh:2222"]}, "port": 22, "expect": "drop"},
		{"name": "certified there", "from": "tag:laptop", "to": {"host": "a", "services": ["ssh:2222", "dns:53/udp"]}, "port": 2222, "expect": "accept"},
		{"name": "not certified", "from": "tag:laptop", "to": "host:a:22", "expect": "drop"},
		{"name": "routed", "from": "tag:laptop", "to": "10.0.0.5:22", "via": "tag:router", "expect": "accept"},
		{"name": "routed, another port", "from": "tag:laptop", "to": "10.0.0.5:23", "via": "tag:router", "expect": "drop"},
		{"name": "routed, not this router's", "from": "tag:laptop", "to": "10.0.0.5:22", "via": {"tags": ["tag:router"], "routes": ["10.0.1.0/24"]}, "expect": "drop"},
		{"name": "exit", "from": "tag:laptop", "to": "192.0.2.8:443", "via": {"host": "exit", "routes": ["0.0.0.0/0", "::/0"]}, "expect": "accept"},
		{"name": "icmp never behind a router", "from": "tag:laptop", "to": "10.0.0.5", "via": "host:gw", "proto": "icmp", "expect": "drop"},
		{"name": "IPv6 routed", "from": "tag:laptop", "to": "[2001:db8::5]:22", "via": "host:gw", "expect": "drop"},
	],
}`

// TestRunTestsServicesAndRoutes: a policy's own tests name certified
// services (svc:NAME:PORT, or "services" in an object) and routed traffic
// ("via" a router, to one address), and `certmesh policy test` shows them.
func TestRunTestsServicesAndRoutes(t *testing.T) {
	pol, err := Parse([]byte(serviceTestsPolicy))
	if err != nil {
		t.Fatal(err)
	}
	results := RunTests(pol)
	if f := Failed(results); len(f) != 0 {
		t.Fatalf("failed: %v", f)
	}
	lines := map[string]string{
		"svc string":                `ok   svc string (line 10): tag:laptop -> svc:ssh:22 tcp: accept by rule 0 "ssh"`,
		"certified there":           `ok   certified there (line 13): tag:laptop -> {host:a svc:ssh:2222/tcp svc:dns:53/udp}:2222 tcp: accept by rule 0 "ssh"`,
		"routed":                    `ok   routed (line 15): tag:laptop -> 10.0.0.5:22 via tag:router tcp: accept by rule 2 "lan ssh"`,
		"routed, not this router's": `ok   routed, not this router's (line 17): tag:laptop -> 10.0.0.5:22 via {tag:router routes:10.0.1.0/24} tcp: drop (default deny)`,
	}
	for _, r := range results {
		if want, ok := lines[r.Name]; ok && r.String() != want {
			t.Errorf("got  %s\nwant %s", r, want)
		}
	}
	if tt := pol.Tests[5]; tt.Via == nil || len(tt.Via.Routes) != 1 || tt.Via.Routes[0] != netip.MustParsePrefix("10.0.0.5/32") {
		t.Fatalf("routed test: %+v", tt)
	}
	// A wrong expectation fails: the tests can tell.
	bad, err := Parse([]byte(strings.Replace(serviceTestsPolicy, `"to": "10.0.0.5:22", "via": "tag:router", "expect": "accept"`,
		`"to": "10.0.0.5:22", "via": "tag:router", "expect": "drop"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if f := Failed(RunTests(bad)); len(f) != 1 || f[0].Name != "routed" {
		t.Fatalf("failed: %v", f)
	}
}

func TestParseServiceAndRoutedTests(t *testing.T) {
	w := func(test string) string {
		return `{"tagOwners": {"tag:r": []}, "tests": [` + test + `]}`
	}
	for _, tc := range []struct {
		name string
		src  string
		want []wantProblem
	}{
		{"svc as a source", w(`{"from": "svc:ssh", "to": "tag:r:22", "expect": "drop"}`),
			[]wantProblem{{at: `"svc:ssh"`, msg: `"from": svc:NAME names a destination, not a source`}}},
		{"svc over icmp", w(`{"from": "tag:r", "to": "svc:ssh", "proto": "icmp", "expect": "drop"}`),
			[]wantProblem{{at: `"svc:ssh"`, msg: `a test to svc:NAME:PORT is over tcp or udp, not icmp`}}},
		{"svc without a port", w(`{"from": "tag:r", "to": "svc:ssh", "expect": "drop"}`),
			[]wantProblem{{at: `"svc:ssh"`, msg: `"to" "svc:ssh" has no port`}}},
		{"bad services", w(`{"from": "tag:r", "to": {"services": ["ssh", "ssh:22", "ssh:23"]}, "port": 22, "expect": "drop"}`),
			[]wantProblem{
				{at: `["ssh"`, msg: `services: service ssh/tcp appears twice`},
				{at: `"ssh"`, msg: `services: service "ssh": want name:port`},
			}},
		{"bad routes", w(`{"from": "tag:r", "to": "10.0.0.5:22", "via": {"routes": ["10.0.0.1/24", "x"]}, "expect": "drop"}`),
			[]wantProblem{
				{at: `"10.0.0.1/24"`, msg: `routes: "10.0.0.1/24" is not a canonical CIDR prefix`},
				{at: `"x"`, msg: `routes: "x" is not a canonical CIDR prefix`},
			}},
		{"via to a device", w(`{"from": "tag:r", "to": "tag:r:22", "via": "tag:r", "expect": "drop"}`),
			[]wantProblem{{at: `"tag:r:22"`, msg: `with "via", "to" is the routed destination: one address`}}},
		{"via to an object", w(`{"from": "tag:r", "to": {"addresses": ["10.0.0.5"], "attestation": "tpm"}, "port": 22, "via": "tag:r", "expect": "drop"}`),
			[]wantProblem{{at: `{"addresses"`, msg: `with "via", "to" is the routed destination`}}},
		{"via a service", w(`{"from": "tag:r", "to": "10.0.0.5:22", "via": "svc:ssh", "expect": "drop"}`),
			[]wantProblem{{at: `"svc:ssh"`, msg: `"via": svc:NAME is not a router`}}},
		{"via with a port", w(`{"from": "tag:r", "to": "10.0.0.5:22", "via": "tag:r:22", "expect": "drop"}`),
			[]wantProblem{{at: `"tag:r:22"`, msg: `"via"`}}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkProblems(t, tc.src, tc.want) })
	}
	// The object form of a routed destination: one address.
	if _, err := Parse([]byte(w(`{"from": "tag:r", "to": {"addresses": ["10.0.0.5"]}, "port": 22, "via": "tag:r", "expect": "drop"}`))); err != nil {
		t.Fatal(err)
	}
}
