package policy

import (
	"fmt"
	"net/netip"

	"github.com/certmesh/certmesh/certs"
)

// Decision is what the policy decides for one packet (or flow).
type Decision struct {
	Accept bool
	// Rule is the index in the policy's rules of the first rule that
	// accepts, or -1 (default deny).
	Rule int
	// RuleName is that rule's name, or DefaultDeny.
	RuleName string
}

// DefaultDeny is the RuleName of a decision no rule made.
const DefaultDeny = "default-deny"

var denied = Decision{Rule: -1, RuleName: DefaultDeny}

func (d Decision) String() string {
	if !d.Accept {
		if d.Rule < 0 {
			return "drop (default deny)"
		}
		return fmt.Sprintf("drop by rule %d %q", d.Rule, d.RuleName)
	}
	return fmt.Sprintf("accept by rule %d %q", d.Rule, d.RuleName)
}

// Compiled is a policy ready for evaluation. It is immutable and safe for
// concurrent use. A nil *Compiled denies everything, as an agent must
// while it holds no valid policy.
//
// Rules are numbered bits. For each side (from, to) an index maps every
// exact key an identity can have (email, IdP group, tag, device ID,
// hostname, address) to the rules that key selects, with local groups
// expanded into their emails and IdP groups at compile time; "*" and CIDR
// selectors are kept apart. Decide ORs the rule sets of the source's keys,
// ANDs those of the destination's, clears the rules whose condition the
// source fails, and takes the lowest rule whose ports match.
type Compiled struct {
	rules []compiledRule
	words int
	src   sideIndex
	dst   sideIndex
	// condTPM, condToken: the rules requiring attestation tpm, token.
	condTPM, condToken []uint64
}

type compiledRule struct {
	name  string
	ports []PortSpec
}

// ruleSet is a set of rules, kept as a list of indexes (sparse) or as a
// bitmap (dense), whichever is cheaper to OR into a scratch set.
type ruleSet struct {
	sparse []int32
	dense  []uint64
}

func (r *ruleSet) orInto(acc []uint64) {
	if r.dense != nil {
		for i, w := range r.dense {
			acc[i] |= w
		}
		return
	}
	for _, i := range r.sparse {
		acc[i/64] |= 1 << (i % 64)
	}
}

// sideIndex selects rules by the keys of an identity.
type sideIndex struct {
	any       []uint64
	users     map[certs.Email]*ruleSet
	idpGroups map[certs.Group]*ruleSet
	tags      map[certs.Tag]*ruleSet
	devices   map[certs.DeviceID]*ruleSet
	hosts     map[certs.Hostname]*ruleSet
	addrs     map[netip.Addr]*ruleSet
	prefixes  []prefixRules // ranges (not single addresses)
	// services: the rules naming svc:NAME (destinations only), which a
	// packet matches at the port and protocol the destination's
	// certificate gives for NAME, whatever the rule's ports say.
	services map[string]*ruleSet
}

type prefixRules struct {
	prefix netip.Prefix
	rules  *ruleSet
}

func newSideIndex(words int) sideIndex {
	return sideIndex{
		any:       make([]uint64, words),
		users:     map[certs.Email]*ruleSet{},
		idpGroups: map[certs.Group]*ruleSet{},
		tags:      map[certs.Tag]*ruleSet{},
		devices:   map[certs.DeviceID]*ruleSet{},
		hosts:     map[certs.Hostname]*ruleSet{},
		addrs:     map[netip.Addr]*ruleSet{},
		services:  map[string]*ruleSet{},
	}
}

// add appends rule r to a key's set unless it ends with it already (rules
// are added in order).
func add[K comparable](m map[K]*ruleSet, k K, r int32) {
	rs := m[k]
	if rs == nil {
		rs = &ruleSet{}
		m[k] = rs
	}
	if l := rs.sparse; len(l) == 0 || l[len(l)-1] != r {
		rs.sparse = append(l, r)
	}
}

// groupExpansion caches groupIndex.expand during a compilation.
type groupExpansion struct {
	gi    *groupIndex
	cache map[certs.Group]expanded
}

type expanded struct {
	emails []certs.Email
	idp    []certs.Group
}

func (ge *groupExpansion) expand(g certs.Group) expanded {
	e, ok := ge.cache[g]
	if !ok {
		e.emails, e.idp = ge.gi.expand(g)
		ge.cache[g] = e
	}
	return e
}

func (s *sideIndex) add(ge *groupExpansion, sel Selector, r int32) {
	switch sel.Kind {
	case SelectAny:
		s.any[r/64] |= 1 << (r % 64)
	case SelectUser:
		add(s.users, certs.Email(sel.Name), r)
	case SelectGroup:
		e := ge.expand(certs.Group(sel.Name))
		for _, email := range e.emails {
			add(s.users, email, r)
		}
		for _, g := range e.idp {
			add(s.idpGroups, g, r)
		}
	case SelectTag:
		add(s.tags, certs.Tag(sel.Name), r)
	case SelectDevice:
		add(s.devices, certs.DeviceID(sel.Name), r)
	case SelectHost:
		add(s.hosts, certs.Hostname(sel.Name), r)
	case SelectService:
		add(s.services, sel.Name, r)
	case SelectPrefix:
		if sel.Prefix.IsSingleIP() {
			add(s.addrs, sel.Prefix.Addr(), r)
			return
		}
		for i := range s.prefixes {
			if s.prefixes[i].prefix == sel.Prefix {
				rs := s.prefixes[i].rules
				if rs.sparse[len(rs.sparse)-1] != r {
					rs.sparse = append(rs.sparse, r)
				}
				return
			}
		}
		s.prefixes = append(s.prefixes, prefixRules{prefix: sel.Prefix, rules: &ruleSet{sparse: []int32{r}}})
	}
}

// finish turns the sets that are cheaper as bitmaps into bitmaps.
func (s *sideIndex) finish(words int) {
	densifyAll(s.users, words)
	densifyAll(s.idpGroups, words)
	densifyAll(s.tags, words)
	densifyAll(s.devices, words)
	densifyAll(s.hosts, words)
	densifyAll(s.addrs, words)
	densifyAll(s.services, words)
	for _, p := range s.prefixes {
		p.rules.densify(words)
	}
}

func densifyAll[K comparable](m map[K]*ruleSet, words int) {
	for _, rs := range m {
		rs.densify(words)
	}
}

// densify makes a set that lists more rules than a bitmap has words a
// bitmap.
func (r *ruleSet) densify(words int) {
	if len(r.sparse) <= words {
		return
	}
	r.dense = make([]uint64, words)
	for _, i := range r.sparse {
		r.dense[i/64] |= 1 << (i % 64)
	}
	r.sparse = nil
}

// or ORs a key's rules into acc.
func or[K comparable](acc []uint64, m map[K]*ruleSet, k K) {
	if rs := m[k]; rs != nil {
		rs.orInto(acc)
	}
}

// collect sets acc to the rules that select id (services aside: see
// collectServices).
func (s *sideIndex) collect(id *certs.Identity, acc []uint64) {
	copy(acc, s.any)
	if u := id.User; u != nil {
		if u.Email != "" {
			or(acc, s.users, u.Email)
		}
		for _, g := range u.Groups {
			or(acc, s.idpGroups, g)
		}
	}
	for _, t := range id.Tags {
		or(acc, s.tags, t)
	}
	if id.DeviceID != "" {
		or(acc, s.devices, id.DeviceID)
	}
	if id.Hostname != "" {
		or(acc, s.hosts, id.Hostname)
	}
	for _, a := range id.Addresses {
		s.collectAddr(a, acc)
	}
}

// collectAddr ORs into acc the rules whose address or CIDR selectors
// contain a.
func (s *sideIndex) collectAddr(a netip.Addr, acc []uint64) {
	or(acc, s.addrs, a)
	for i := range s.prefixes {
		if s.prefixes[i].prefix.Contains(a) {
			s.prefixes[i].rules.orInto(acc)
		}
	}
}

// collectServices ORs into acc the rules naming a service of svcs that is
// offered at proto and port, and reports whether there was one.
func (s *sideIndex) collectServices(svcs []certs.Service, proto Proto, port uint16, acc []uint64) bool {
	found := false
	for _, svc := range svcs {
		if rs := s.services[svc.Name]; rs != nil && serviceAt(svc, proto, port) {
			rs.orInto(acc)
			found = true
		}
	}
	return found
}

// serviceAt reports whether a packet of proto to port reaches svc.
func serviceAt(svc certs.Service, proto Proto, port uint16) bool {
	switch svc.Protocol {
	case certs.ProtocolTCP:
		return proto == ProtoTCP && port == svc.Port
	case certs.ProtocolUDP:
		return proto == ProtoUDP && port == svc.Port
	}
	return false
}

// Compile builds the evaluator of a policy Parse returned. (On a Policy
// built by hand, an undefined group is the IdP group of that name alone.)
func (p *Policy) Compile() *Compiled {
	n := len(p.Rules)
	words := (n + 63) / 64
	c := &Compiled{
		rules:     make([]compiledRule, n),
		words:     words,
		src:       newSideIndex(words),
		dst:       newSideIndex(words),
		condTPM:   make([]uint64, words),
		condToken: make([]uint64, words),
	}
	ge := &groupExpansion{gi: newGroupIndex(p.Groups), cache: map[certs.Group]expanded{}}
	for i, r := range p.Rules {
		ri := int32(i)
		c.rules[i] = compiledRule{name: r.Name, ports: r.Ports}
		for _, s := range r.From {
			c.src.add(ge, s, ri)
		}
		for _, s := range r.To {
			c.dst.add(ge, s, ri)
		}
		switch r.When.Attestation {
		case "":
		case certs.AttestationTPM:
			c.condTPM[i/64] |= 1 << (i % 64)
		case certs.AttestationToken:
			c.condToken[i/64] |= 1 << (i % 64)
		default: // unknown level: never holds
			c.condTPM[i/64] |= 1 << (i % 64)
			c.condToken[i/64] |= 1 << (i % 64)
		}
	}
	c.src.finish(words)
	c.dst.finish(words)
	return c
}

// RuleCount is the number of rules, the size of a per-rule counter array.
func (c *Compiled) RuleCount() int {
	if c == nil {
		return 0
	}
	return len(c.rules)
}

// RuleName is the name of rule i (DefaultDeny for -1).
func (c *Compiled) RuleName(i int) string {
	if c == nil || i < 0 || i >= len(c.rules) {
		return DefaultDeny
	}
	return c.rules[i].name
}

// RuleNames are the names of the rules, in order.
func (c *Compiled) RuleNames() []string {
	if c == nil {
		return nil
	}
	out := make([]string, len(c.rules))
	for i, r := range c.rules {
		out[i] = r.name
	}
	return out
}
