package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/certs"
)

const evalPolicy = `{
	"groups": {
		"group:eng": [],
		"group:dba": ["user:dana@corp.example", "group:oncall"],
		"group:oncall": ["user:omar@corp.example"],
		"group:Platform Team": [],
	},
	"tagOwners": {"tag:db": ["group:dba"], "tag:web": [], "tag:prod": [], "tag:ci": [], "tag:kiosk": []},
	"rules": [
		{"name": "eng to db",         "from": ["group:eng"],            "to": ["tag:db"],          "ports": ["tcp:5432"]},
		{"name": "dba to db",         "from": ["group:dba"],            "to": ["tag:db"],          "ports": ["tcp:*"]},
		{"name": "web",               "from": ["*"],                    "to": ["tag:web"],         "ports": ["tcp:80", "tcp:443"]},
		{"name": "admin ssh on tpm",  "from": ["user:Admin@Corp.Example"], "to": ["*"],            "ports": ["tcp:22"], "when": {"attestation": "tpm"}},
		{"name": "ci builds",         "from": ["tag:ci"],               "to": ["host:build"],      "ports": ["tcp:8000-8100", "udp:9000-9001"]},
		{"name": "dns",               "from": ["100.64.0.0/10"],        "to": ["100.64.0.53"],     "ports": ["udp:53", "tcp:53"]},
		{"name": "ping",              "from": ["*"],                    "to": ["*"],               "ports": ["icmp"]},
		{"name": "one device",        "from": ["device:aaaabbbbccccdddd"], "to": ["tag:prod"],     "ports": ["*"]},
		{"name": "v6",                "from": ["fd7a:c3e7:5e00::/48"],  "to": ["host:v6srv"],      "ports": ["tcp:443"]},
		{"name": "platform",          "from": ["group:Platform Team"],  "to": ["tag:web"],         "ports": ["tcp:8080"]},
		{"name": "kiosks",            "from": ["tag:kiosk"],            "to": ["host:kiosksrv"],   "ports": ["tcp:9100"], "when": {"attestation": "token"}},
		{"name": "to a user's laptop","from": ["host:helpdesk"],        "to": ["user:alice@corp.example"], "ports": ["tcp:5900"]},
		{"name": "one address",       "from": ["100.64.9.9"],           "to": ["device:eeeeffffgggghhhh"], "ports": ["udp:*"]},
	],
}`

func mustCompile(t testing.TB, src string) *Compiled {
	t.Helper()
	pol, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return pol.Compile()
}

// id builds an identity from "key=value" traits: user, groups (comma
// separated), tags, device, host, addrs, svcs (certs.ParseService form),
// routes, att ("" for none, else the level), rejected (a refused user
// certificate).
func id(traits ...string) certs.Identity {
	out := certs.Identity{Attestation: certs.AttestationToken, TrustDomain: "corp.example"}
	for _, tr := range traits {
		k, v, _ := strings.Cut(tr, "=")
		switch k {
		case "user":
			if out.User == nil {
				out.User = &certs.UserIdentity{}
			}
			out.User.Email = certs.Email(v)
		case "groups":
			if out.User == nil {
				out.User = &certs.UserIdentity{}
			}
			for _, g := range strings.Split(v, ",") {
				out.User.Groups = append(out.User.Groups, certs.Group(g))
			}
		case "tags":
			for _, g := range strings.Split(v, ",") {
				out.Tags = append(out.Tags, certs.Tag(g))
			}
		case "device":
			out.DeviceID = certs.DeviceID(v)
		case "host":
			out.Hostname = certs.Hostname(v)
		case "addrs":
			for _, a := range strings.Split(v, ",") {
				out.Addresses = append(out.Addresses, netip.MustParseAddr(a))
			}
		case "svcs":
			for _, sv := range strings.Split(v, ",") {
				svc, err := certs.ParseService(sv)
				if err != nil {
					panic(err)
				}
				out.Services = append(out.Services, svc)
			}
		case "routes":
			for _, r := range strings.Split(v, ",") {
				out.Routes = append(out.Routes, netip.MustParsePrefix(r))
			}
		case "att":
			out.Attestation = certs.AttestationLevel(v)
		case "rejected":
			out.UserRejected = &certs.RejectError{Reason: certs.ReasonUserExpired}
		default:
			panic("unknown trait " + k)
		}
	}
	return out
}

func TestDecide(t *testing.T) {
	c := mustCompile(t, evalPolicy)
	db := id("host=db1", "tags=db", "addrs=100.64.0.10")
	web := id("host=web1", "tags=web,prod")
	cases := []struct {
		name     string
		src, dst certs.Identity
		proto    Proto
		port     uint16
		rule     int // -1: drop
	}{
		// groups from the identity provider, and local ones
		{"IdP group eng reaches db on 5432", id("user=bob@corp.example", "groups=eng"), db, ProtoTCP, 5432, 0},
		{"IdP group eng not on 5433", id("user=bob@corp.example", "groups=eng"), db, ProtoTCP, 5433, -1},
		{"IdP group eng not over UDP", id("user=bob@corp.example", "groups=eng"), db, ProtoUDP, 5432, -1},
		{"not in eng", id("user=bob@corp.example", "groups=sales"), db, ProtoTCP, 5432, -1},
		{"group names are exact", id("user=bob@corp.example", "groups=Eng"), db, ProtoTCP, 5432, -1},
		{"group with a space from the IdP", id("user=bob@corp.example", "groups=Platform Team"), web, ProtoTCP, 8080, 9},
		{"local member dana", id("user=dana@corp.example"), db, ProtoTCP, 22, 1},
		{"nested local member omar", id("user=omar@corp.example"), db, ProtoTCP, 6000, 1},
		{"IdP group dba counts as the local group", id("user=x@corp.example", "groups=dba"), db, ProtoTCP, 1, 1},
		{"IdP group oncall counts through nesting", id("groups=oncall"), db, ProtoTCP, 1, 1},
		{"first matching rule reports", id("user=dana@corp.example", "groups=eng"), db, ProtoTCP, 5432, 0},
		{"no user: no group", id("host=laptop", "rejected"), db, ProtoTCP, 5432, -1},
		{"a refused user certificate buys nothing", id("host=laptop", "rejected"), db, ProtoTCP, 22, -1},
		{"db is not the destination", id("user=dana@corp.example"), web, ProtoTCP, 5432, -1},
		// users and attestation
		{"admin on tpm", id("user=admin@corp.example", "att=tpm"), web, ProtoTCP, 22, 3},
		{"admin without tpm", id("user=admin@corp.example"), web, ProtoTCP, 22, -1},
		{"someone else on tpm", id("user=eve@corp.example", "att=tpm"), web, ProtoTCP, 22, -1},
		{"kiosk with token attestation", id("tags=kiosk"), id("host=kiosksrv"), ProtoTCP, 9100, 10},
		{"kiosk with tpm attestation", id("tags=kiosk", "att=tpm"), id("host=kiosksrv"), ProtoTCP, 9100, 10},
		{"kiosk with no valid attestation", id("tags=kiosk", "att="), id("host=kiosksrv"), ProtoTCP, 9100, -1},
		// tags, hosts, ranges
		{"anyone to web 80", id(), web, ProtoTCP, 80, 2},
		{"anyone to web 443", id("host=x"), web, ProtoTCP, 443, 2},
		{"anyone to web 81", id(), web, ProtoTCP, 81, -1},
		{"ci range low edge", id("tags=ci"), id("host=build"), ProtoTCP, 8000, 4},
		{"ci range high edge", id("tags=ci"), id("host=build"), ProtoTCP, 8100, 4},
		{"ci below range", id("tags=ci"), id("host=build"), ProtoTCP, 7999, -1},
		{"ci above range", id("tags=ci"), id("host=build"), ProtoTCP, 8101, -1},
		{"ci udp range", id("tags=ci"), id("host=build"), ProtoUDP, 9001, 4},
		{"ci udp outside", id("tags=ci"), id("host=build"), ProtoUDP, 9002, -1},
		{"ci tcp on the udp range", id("tags=ci"), id("host=build"), ProtoTCP, 9000, -1},
		{"ci to another host", id("tags=ci"), id("host=build2"), ProtoTCP, 8000, -1},
		{"one tag among several", id("tags=web,ci"), id("host=build"), ProtoTCP, 8050, 4},
		// addresses and CIDRs
		{"overlay range to dns", id("addrs=100.100.1.1"), id("addrs=100.64.0.53"), ProtoUDP, 53, 5},
		{"outside the range", id("addrs=10.0.0.1"), id("addrs=100.64.0.53"), ProtoUDP, 53, -1},
		{"second address in range", id("addrs=fd7a:c3e7:5e00::9,100.64.0.7"), id("addrs=fd7a:c3e7:5e00::53,100.64.0.53"), ProtoTCP, 53, 5},
		{"dns server is another", id("addrs=100.100.1.1"), id("addrs=100.64.0.54"), ProtoUDP, 53, -1},
		{"IPv6 range", id("addrs=fd7a:c3e7:5e00::9"), id("host=v6srv"), ProtoTCP, 443, 8},
		{"IPv6 outside the range", id("addrs=fd7a:c3e7:5e01::9"), id("host=v6srv"), ProtoTCP, 443, -1},
		{"single address", id("addrs=100.64.9.9"), id("device=eeeeffffgggghhhh"), ProtoUDP, 4000, 12},
		{"single address, another device", id("addrs=100.64.9.9"), id("device=eeeeffffgggghhhi"), ProtoUDP, 4000, -1},
		{"neighbour address", id("addrs=100.64.9.10"), id("device=eeeeffffgggghhhh"), ProtoUDP, 4000, -1},
		// ICMP and other protocols
		{"ping", id(), id(), ProtoICMP, 0, 6},
		{"ping v6", id(), id(), ProtoICMPv6, 0, 6},
		{"ping ignores the port argument", id(), id(), ProtoICMP, 1234, 6},
		{"GRE only with *", id("device=aaaabbbbccccdddd"), web, 47, 0, 7},
		{"GRE otherwise dropped", id("device=aaaabbbbccccdddd"), db, 47, 0, -1},
		{"device rule, all ports", id("device=aaaabbbbccccdddd"), web, ProtoUDP, 9, 7},
		// destinations by user
		{"helpdesk to alice's laptop", id("host=helpdesk"), id("host=laptop", "user=alice@corp.example"), ProtoTCP, 5900, 11},
		{"helpdesk to bob's laptop", id("host=helpdesk"), id("host=laptop", "user=bob@corp.example"), ProtoTCP, 5900, -1},
		{"empty identities", certs.Identity{}, certs.Identity{}, ProtoTCP, 80, -1},
	}
	names := c.RuleNames()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := c.Decide(tc.src, tc.dst, tc.proto, tc.port)
			want := Decision{Rule: -1, RuleName: DefaultDeny}
			if tc.rule >= 0 {
				want = Decision{Accept: true, Rule: tc.rule, RuleName: names[tc.rule]}
			}
			if d != want {
				t.Fatalf("Decide = %v, want %v", d, want)
			}
			if n := c.ForNode(tc.dst).Decide(tc.src, tc.proto, tc.port); n != d {
				t.Fatalf("Node.Decide = %v, Decide %v", n, d)
			}
			// The filter calls DecideFunc with one of the node's addresses
			// (one no rule names, when the case has none).
			self := tc.dst
			if len(self.Addresses) == 0 {
				self.Addresses = []netip.Addr{netip.MustParseAddr("198.51.100.1")}
			}
			src := tc.src
			if acc, rule := c.ForNode(self).DecideFunc()(&src, self.Addresses[len(self.Addresses)-1], uint8(tc.proto), tc.port); acc != d.Accept || rule != d.Rule {
				t.Fatalf("DecideFunc = %v %d", acc, rule)
			}
		})
	}
}

func TestCompiledMetadata(t *testing.T) {
	c := mustCompile(t, evalPolicy)
	if c.RuleCount() != 13 || c.RuleName(0) != "eng to db" || c.RuleName(-1) != DefaultDeny || c.RuleName(13) != DefaultDeny {
		t.Fatalf("count %d, names %q", c.RuleCount(), c.RuleNames())
	}
	var nilc *Compiled
	if nilc.RuleCount() != 0 || nilc.RuleNames() != nil || nilc.Decide(id(), id(), ProtoICMP, 0).Accept {
		t.Fatal("nil Compiled")
	}
	n := nilc.ForNode(id())
	if n.AcceptsAny() || n.Decide(id(), ProtoICMP, 0).Accept {
		t.Fatal("nil Compiled's node accepts")
	}
	var nilNode *Node
	if nilNode.AcceptsAny() || nilNode.Decide(id(), ProtoICMP, 0).Accept {
		t.Fatal("nil Node accepts")
	}
	if acc, rule := nilNode.DecideFunc()(&certs.Identity{}, netip.MustParseAddr("100.64.0.1"), 1, 0); acc || rule != -1 {
		t.Fatal("nil Node's DecideFunc accepts")
	}
	// AcceptsAny: whether any rule's "to" selects the node.
	only := mustCompile(t, `{"tagOwners": {"tag:db": []}, "rules": [{"from": ["*"], "to": ["tag:db"], "ports": ["*"]}]}`)
	if only.ForNode(id("host=x")).AcceptsAny() || !only.ForNode(id("tags=db")).AcceptsAny() {
		t.Fatal("AcceptsAny")
	}
}

func TestDecideManyRules(t *testing.T) {
	// More rules than Decide keeps on the stack; the match is the last one.
	var b strings.Builder
	b.WriteString(`{"rules": [`)
	const n = 3000
	for i := range n {
		fmt.Fprintf(&b, `{"from": ["100.64.%d.%d"], "to": ["*"], "ports": ["tcp:%d"]},`, i/256, i%256, 1+i)
	}
	fmt.Fprintf(&b, `{"name": "last", "from": ["*"], "to": ["*"], "ports": ["udp:53"]}]}`)
	c := mustCompile(t, b.String())
	if d := c.Decide(id("addrs=100.64.1.5"), id(), ProtoUDP, 53); !d.Accept || d.Rule != n || d.RuleName != "last" {
		t.Fatalf("%v", d)
	}
	if d := c.Decide(id("addrs=100.64.11.183"), id(), ProtoTCP, 2999+1); !d.Accept || d.Rule != 2999 {
		t.Fatalf("%v", d)
	}
	if d := c.Decide(id("addrs=100.64.11.183"), id(), ProtoTCP, 2999); d.Accept {
		t.Fatalf("%v", d)
	}
}

// reference is the policy's meaning written plainly: the first rule whose
// from matches src, whose to matches dst, whose condition holds and one of
// whose ports matches.
func reference(p *Policy, src, dst certs.Identity, proto Proto, port uint16) int {
	gi := newGroupIndex(p.Groups)
	any := func(sels []Selector, id certs.Identity) bool {
		return slices.ContainsFunc(sels, func(s Selector) bool { return gi.matches(s, &id) })
	}
	for i, r := range p.Rules {
		var svcs, others []Selector
		for _, s := range r.To {
			if s.Kind == SelectService {
				svcs = append(svcs, s)
			} else {
				others = append(others, s)
			}
		}
		byPort := any(others, dst) && slices.ContainsFunc(r.Ports, func(ps PortSpec) bool { return ps.matches(proto, port) })
		byService := slices.ContainsFunc(svcs, func(s Selector) bool {
			return slices.ContainsFunc(dst.Services, func(svc certs.Service) bool {
				return svc.Name == s.Name && svc.Port == port && string(svc.Protocol) == proto.String()
			})
		})
		if any(r.From, src) && r.When.holds(&src) && (byPort || byService) {
			return i
		}
	}
	return -1
}

// routedReference is the plain meaning of DecideRouted: the index of the
// first rule accepting a packet from src that router forwards to dst, or -1.
func routedReference(p *Policy, src, router certs.Identity, dst netip.Addr, proto Proto, port uint16) int {
	if !slices.ContainsFunc(router.Routes, func(r netip.Prefix) bool { return r.Contains(dst) }) {
		return -1
	}
	gi := newGroupIndex(p.Groups)
	for i, r := range p.Rules {
		to := slices.ContainsFunc(r.To, func(s Selector) bool { return s.Kind == SelectPrefix && s.Prefix.Contains(dst) })
		if to && slices.ContainsFunc(r.From, func(s Selector) bool { return gi.matches(s, &src) }) && r.When.holds(&src) &&
			slices.ContainsFunc(r.Ports, func(ps PortSpec) bool { return ps.matches(proto, port) }) {
			return i
		}
	}
	return -1
}

// TestCompiledAgreesWithReference checks the indexed evaluator against the
// plain meaning on random policies and identities.
func TestCompiledAgreesWithReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	emails := []string{"a@x.example", "b@x.example", "c@x.example"}
	idpGroups := []string{"g1", "g2", "g3", "g4"}
	tags := []string{"t1", "t2", "t3"}
	hosts := []string{"h1", "h2"}
	devices := []string{"aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"}
	addrs := []string{"100.64.0.1", "100.64.1.1", "100.65.0.1", "fd7a::1", "fd7b::1"}
	prefixes := []string{"100.64.0.0/16", "100.64.0.0/10", "100.64.1.1", "fd7a::/16", "fd7a::1", "0.0.0.0/0",
		"10.0.0.0/24", "10.0.0.5", "192.168.0.0/16", "2001:db8::/32", "::/0"}
	pick := func(l []string) string { return l[rng.IntN(len(l))] }
	services := []string{"ssh:22", "ssh:50", "web:80", "dns:53/udp", "dns:53", "ntp:123/udp"}
	routes := []string{"10.0.0.0/24", "10.0.0.0/8", "192.168.1.0/24", "0.0.0.0/0", "::/0", "2001:db8::/32"}
	routedDsts := []string{"10.0.0.5", "10.1.2.3", "192.168.1.1", "8.8.8.8", "2001:db8::5", "2606:4700::1"}
	selector := func() string {
		switch rng.IntN(8) {
		case 0:
			return "*"
		case 1:
			return "user:" + pick(emails)
		case 2, 3:
			return "group:" + pick(idpGroups)
		case 4:
			return "tag:" + pick(tags)
		case 5:
			return "host:" + pick(hosts)
		case 6:
			return "device:" + pick(devices)
		}
		return pick(prefixes)
	}
	ports := []string{"*", "icmp", "tcp:1-100", "tcp:50", "udp:53", "udp:*", "tcp:*", "tcp:100-200"}
	identity := func() certs.Identity {
		var out certs.Identity
		if rng.IntN(3) > 0 {
			out.User = &certs.UserIdentity{}
			if rng.IntN(4) > 0 {
				out.User.Email = certs.Email(pick(emails))
			}
			for range rng.IntN(3) {
				out.User.Groups = append(out.User.Groups, certs.Group(pick(idpGroups)))
			}
		}
		for range rng.IntN(3) {
			out.Tags = append(out.Tags, certs.Tag(pick(tags)))
		}
		if rng.IntN(2) == 0 {
			out.Hostname = certs.Hostname(pick(hosts))
		}
		if rng.IntN(2) == 0 {
			out.DeviceID = certs.DeviceID(pick(devices))
		}
		for range rng.IntN(3) {
			out.Addresses = append(out.Addresses, netip.MustParseAddr(pick(addrs)))
		}
		for range rng.IntN(3) {
			svc, _ := certs.ParseService(pick(services))
			out.Services = append(out.Services, svc)
		}
		for range rng.IntN(3) {
			out.Routes = append(out.Routes, netip.MustParsePrefix(pick(routes)))
		}
		out.Attestation = []certs.AttestationLevel{"", certs.AttestationToken, certs.AttestationTPM}[rng.IntN(3)]
		return out
	}
	for iter := range 200 {
		var b strings.Builder
		b.WriteString(`{"groups": {"group:g1": ["user:a@x.example"], "group:g2": ["group:g1", "user:b@x.example"], "group:g3": [], "group:g4": ["group:g2"]},
			"tagOwners": {"tag:t1": [], "tag:t2": [], "tag:t3": []}, "rules": [`)
		nrules := 1 + rng.IntN(150)
		for range nrules {
			var from, to, ps []string
			for range 1 + rng.IntN(3) {
				from = append(from, fmt.Sprintf("%q", selector()))
			}
			onlyServices := true
			for range 1 + rng.IntN(2) {
				sel := selector()
				if rng.IntN(4) == 0 {
					sel = "svc:" + []string{"ssh", "web", "dns", "ntp", "none"}[rng.IntN(5)]
				} else {
					onlyServices = false
				}
				to = append(to, fmt.Sprintf("%q", sel))
			}
			for range 1 + rng.IntN(2) {
				ps = append(ps, fmt.Sprintf("%q", pick(ports)))
			}
			if onlyServices {
				ps = nil
			}
			when := ""
			switch rng.IntN(6) {
			case 0:
				when = `, "when": {"attestation": "tpm"}`
			case 1:
				when = `, "when": {"attestation": "token"}`
			}
			portsField := ""
			if ps != nil {
				portsField = fmt.Sprintf(`, "ports": [%s]`, strings.Join(ps, ","))
			}
			fmt.Fprintf(&b, `{"from": [%s], "to": [%s]%s%s},`, strings.Join(from, ","), strings.Join(to, ","), portsField, when)
		}
		b.WriteString("]}")
		pol, err := Parse([]byte(b.String()))
		if err != nil {
			t.Fatalf("iteration %d: %v", iter, err)
		}
		c := pol.Compile()
		for range 200 {
			src, dst := identity(), identity()
			proto := []Proto{ProtoTCP, ProtoUDP, ProtoICMP, ProtoICMPv6, 47}[rng.IntN(5)]
			port := uint16(rng.IntN(256))
			want := reference(pol, src, dst, proto, port)
			got := c.Decide(src, dst, proto, port)
			if got.Rule != want || got.Accept != (want >= 0) {
				t.Fatalf("iteration %d: Decide(%+v, %+v, %s, %d) = %v, reference says rule %d", iter, src, dst, proto, port, got, want)
			}
			if n := c.ForNode(dst).Decide(src, proto, port); n != got {
				t.Fatalf("iteration %d: Node.Decide = %v, Decide %v", iter, n, got)
			}
			to := netip.MustParseAddr(pick(routedDsts))
			want = routedReference(pol, src, dst, to, proto, port)
			got = c.DecideRouted(src, dst, to, proto, port)
			if got.Rule != want || got.Accept != (want >= 0) {
				t.Fatalf("iteration %d: DecideRouted(%+v, %+v, %s, %s, %d) = %v, reference says rule %d", iter, src, dst, to, proto, port, got, want)
			}
			if p := netip.MustParsePrefix(pick(routes)); c.ForNode(src).MayRoute(dst, p) != mayRouteReference(pol, src, dst, p) {
				t.Fatalf("iteration %d: MayRoute(%+v, %+v, %s) disagrees with the reference", iter, src, dst, p)
			}
			if !slices.Contains(dst.Addresses, to) {
				if acc, rule := c.ForNode(dst).DecideFunc()(&src, to, uint8(proto), port); acc != got.Accept || rule != got.Rule {
					t.Fatalf("iteration %d: DecideFunc to %s = %v %d, DecideRouted %v", iter, to, acc, rule, got)
				}
			}
		}
	}
}

func TestCanAssignTag(t *testing.T) {
	pol, err := Parse([]byte(`{
		"groups": {"group:dba": ["user:dana@corp.example"], "group:eng": []},
		"tagOwners": {"tag:db": ["group:dba", "tag:ci"], "tag:ci": [], "tag:web": ["group:eng", "user:root@corp.example"]},
	}`))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		tag  certs.Tag
		by   certs.Identity
		want bool
	}{
		{"db", id("user=dana@corp.example"), true},
		{"db", id("user=bob@corp.example", "groups=dba"), true},
		{"db", id("user=bob@corp.example"), false},
		{"db", id("tags=ci"), true},
		{"ci", id("user=dana@corp.example"), false},
		{"web", id("user=root@corp.example"), true},
		{"web", id("groups=eng"), true},
		{"nope", id("user=root@corp.example"), false},
	}
	for _, tc := range cases {
		if got := pol.CanAssignTag(tc.tag, tc.by); got != tc.want {
			t.Errorf("CanAssignTag(%s, %s) = %v", tc.tag, describe(tc.by), got)
		}
	}
}
