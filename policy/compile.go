package policy

import (
	"fmt"
	"math/bits"
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

// sideIndex selects rules by the keys of an identity.
type sideIndex struct {
	any       []uint64
	users     map[certs.Email][]int32
	idpGroups map[certs.Group][]int32
	tags      map[certs.Tag][]int32
	devices   map[certs.DeviceID][]int32
	hosts     map[certs.Hostname][]int32
	addrs     map[netip.Addr][]int32
	prefixes  []prefixRules // not single addresses
}

type prefixRules struct {
	prefix netip.Prefix
	rules  []int32
}

func newSideIndex(words int) sideIndex {
	return sideIndex{
		any:       make([]uint64, words),
		users:     map[certs.Email][]int32{},
		idpGroups: map[certs.Group][]int32{},
		tags:      map[certs.Tag][]int32{},
		devices:   map[certs.DeviceID][]int32{},
		hosts:     map[certs.Hostname][]int32{},
		addrs:     map[netip.Addr][]int32{},
	}
}

// add appends rule r to a posting list unless it ends with it already.
func add[K comparable](m map[K][]int32, k K, r int32) {
	l := m[k]
	if len(l) == 0 || l[len(l)-1] != r {
		m[k] = append(l, r)
	}
}

func (s *sideIndex) add(gi *groupIndex, sel Selector, r int32) {
	switch sel.Kind {
	case SelectAny:
		s.any[r/64] |= 1 << (r % 64)
	case SelectUser:
		add(s.users, certs.Email(sel.Name), r)
	case SelectGroup:
		emails, idp := gi.expand(certs.Group(sel.Name))
		for _, e := range emails {
			add(s.users, e, r)
		}
		for _, g := range idp {
			add(s.idpGroups, g, r)
		}
	case SelectTag:
		add(s.tags, certs.Tag(sel.Name), r)
	case SelectDevice:
		add(s.devices, certs.DeviceID(sel.Name), r)
	case SelectHost:
		add(s.hosts, certs.Hostname(sel.Name), r)
	case SelectPrefix:
		if sel.Prefix.IsSingleIP() {
			add(s.addrs, sel.Prefix.Addr(), r)
			return
		}
		for i := range s.prefixes {
			if s.prefixes[i].prefix == sel.Prefix {
				l := s.prefixes[i].rules
				if l[len(l)-1] != r {
					s.prefixes[i].rules = append(l, r)
				}
				return
			}
		}
		s.prefixes = append(s.prefixes, prefixRules{prefix: sel.Prefix, rules: []int32{r}})
	}
}

func setAll(acc []uint64, rules []int32) {
	for _, r := range rules {
		acc[r/64] |= 1 << (r % 64)
	}
}

// collect ORs into acc the rules that select id.
func (s *sideIndex) collect(id *certs.Identity, acc []uint64) {
	copy(acc, s.any)
	if u := id.User; u != nil {
		if u.Email != "" {
			setAll(acc, s.users[u.Email])
		}
		for _, g := range u.Groups {
			setAll(acc, s.idpGroups[g])
		}
	}
	for _, t := range id.Tags {
		setAll(acc, s.tags[t])
	}
	if id.DeviceID != "" {
		setAll(acc, s.devices[id.DeviceID])
	}
	if id.Hostname != "" {
		setAll(acc, s.hosts[id.Hostname])
	}
	for _, a := range id.Addresses {
		setAll(acc, s.addrs[a])
		for i := range s.prefixes {
			if s.prefixes[i].prefix.Contains(a) {
				setAll(acc, s.prefixes[i].rules)
			}
		}
	}
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
	gi := newGroupIndex(p.Groups)
	for i, r := range p.Rules {
		ri := int32(i)
		c.rules[i] = compiledRule{name: r.Name, ports: r.Ports}
		for _, s := range r.From {
			c.src.add(gi, s, ri)
		}
		for _, s := range r.To {
			c.dst.add(gi, s, ri)
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

// scratchWords is how many rule-set words Decide keeps on the stack
// (policies of up to 1024 rules allocate nothing).
const scratchWords = 16

// Decide says whether a packet from the peer src to the node dst (the one
// enforcing the policy), of protocol proto to port (ignored for protocols
// other than TCP and UDP), is accepted, and by which rule. src and dst are
// identities certs.Verify returned.
func (c *Compiled) Decide(src certs.Identity, dst certs.Identity, proto Proto, port uint16) Decision {
	if c == nil || len(c.rules) == 0 {
		return denied
	}
	var buf [scratchWords]uint64
	var dstRules []uint64
	if c.words <= scratchWords {
		dstRules = buf[:c.words]
	} else {
		dstRules = make([]uint64, c.words)
	}
	c.dst.collect(&dst, dstRules)
	return c.decide(&src, dstRules, proto, port)
}

func (c *Compiled) decide(src *certs.Identity, dstRules []uint64, proto Proto, port uint16) Decision {
	var buf [scratchWords]uint64
	var acc []uint64
	if c.words <= scratchWords {
		acc = buf[:c.words]
	} else {
		acc = make([]uint64, c.words)
	}
	c.src.collect(src, acc)
	tpm := src.Attestation == certs.AttestationTPM
	valid := src.Attestation.Valid()
	for w := range acc {
		x := acc[w] & dstRules[w]
		if !tpm {
			x &^= c.condTPM[w]
		}
		if !valid {
			x &^= c.condToken[w]
		}
		for x != 0 {
			i := w*64 + bits.TrailingZeros64(x)
			for _, ps := range c.rules[i].ports {
				if ps.matches(proto, port) {
					return Decision{Accept: true, Rule: i, RuleName: c.rules[i].name}
				}
			}
			x &= x - 1
		}
	}
	return denied
}

// Node is a compiled policy bound to the node that enforces it: the rules
// whose "to" selects this node, computed once. Build a new one when the
// node's own identity changes (a user logs in, a new certificate).
type Node struct {
	c     *Compiled
	rules []uint64
	any   bool
}

// ForNode binds the policy to the enforcing node's identity. A nil
// *Compiled gives a Node that denies everything.
func (c *Compiled) ForNode(self certs.Identity) *Node {
	n := &Node{c: c}
	if c == nil {
		return n
	}
	n.rules = make([]uint64, c.words)
	c.dst.collect(&self, n.rules)
	for _, w := range n.rules {
		n.any = n.any || w != 0
	}
	return n
}

// Decide is Compiled.Decide with this node as the destination.
func (n *Node) Decide(src certs.Identity, proto Proto, port uint16) Decision {
	if n == nil || !n.any {
		return denied
	}
	return n.c.decide(&src, n.rules, proto, port)
}

// DecideFunc is Decide in the form a packet filter calls it: src by
// pointer (not copied), the IP protocol number, and (accept, rule index or
// -1). It is safe for concurrent use.
func (n *Node) DecideFunc() func(src *certs.Identity, proto uint8, dstPort uint16) (accept bool, rule int) {
	return func(src *certs.Identity, proto uint8, dstPort uint16) (bool, int) {
		if n == nil || !n.any || src == nil {
			return false, -1
		}
		d := n.c.decide(src, n.rules, Proto(proto), dstPort)
		return d.Accept, d.Rule
	}
}

// AcceptsAny reports whether some rule applies to this node at all; when
// none does, every inbound packet is dropped.
func (n *Node) AcceptsAny() bool { return n != nil && n.any }
