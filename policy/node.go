package policy

import (
	"net/netip"
	"slices"

	"github.com/certmesh/certmesh/certs"
)

// Node is a compiled policy bound to the node that enforces it: the rules
// whose "to" selects this node, and those its certified services select,
// computed once, and the prefixes its certificate routes. Build a new one
// when the node's own identity changes (a user logs in, a new
// certificate).
type Node struct {
	c     *Compiled
	rules []uint64
	svc   []nodeService
	any   bool
	// addrs are the node's own addresses (a packet to one is local),
	// routes the prefixes its certificate lets it route.
	addrs  []netip.Addr
	routes []netip.Prefix
	// from are the rules whose "from" selects this node and whose
	// condition it meets: those it may send under (MayRoute).
	from []uint64
}

// nodeService is one service the node's certificate offers and the rules
// that name it.
type nodeService struct {
	svc   certs.Service
	rules []uint64
}

// ForNode binds the policy to the enforcing node's identity. A nil
// *Compiled gives a Node that denies everything.
func (c *Compiled) ForNode(self certs.Identity) *Node {
	n := &Node{c: c, addrs: slices.Clone(self.Addresses), routes: slices.Clone(self.Routes)}
	if c == nil {
		return n
	}
	n.rules = make([]uint64, c.words)
	c.dst.collect(&self, n.rules)
	n.from = c.sourceRules(&self)
	for _, w := range n.rules {
		n.any = n.any || w != 0
	}
	for _, s := range self.Services {
		rs := c.dst.services[s.Name]
		if rs == nil {
			continue
		}
		ns := nodeService{svc: s, rules: make([]uint64, c.words)}
		rs.orInto(ns.rules)
		n.svc = append(n.svc, ns)
		n.any = true
	}
	return n
}

// Decide is Compiled.Decide with this node as the destination.
func (n *Node) Decide(src certs.Identity, proto Proto, port uint16) Decision {
	if n == nil || !n.any {
		return denied
	}
	return n.decideLocal(&src, proto, port)
}

func (n *Node) decideLocal(src *certs.Identity, proto Proto, port uint16) Decision {
	var svc []uint64
	var buf [scratchWords]uint64
	for i := range n.svc {
		if !serviceAt(n.svc[i].svc, proto, port) {
			continue
		}
		if svc == nil {
			svc = n.c.ruleSet(&buf)
		}
		for w, x := range n.svc[i].rules {
			svc[w] |= x
		}
	}
	return n.c.decide(src, n.rules, svc, proto, port)
}

// DecideRouted is Compiled.DecideRouted with this node as the router: for
// a packet this node forwards to dst, an address inside a prefix its
// certificate routes and not its own.
func (n *Node) DecideRouted(src certs.Identity, dst netip.Addr, proto Proto, port uint16) Decision {
	if n == nil {
		return denied
	}
	return n.decideRouted(&src, dst, proto, port)
}

func (n *Node) decideRouted(src *certs.Identity, dst netip.Addr, proto Proto, port uint16) Decision {
	if n.c == nil || len(n.c.rules) == 0 || !serves(n.routes, dst) {
		return denied
	}
	var buf [scratchWords]uint64
	dstRules := n.c.ruleSet(&buf)
	n.c.dst.collectAddr(dst, dstRules)
	return n.c.decide(src, dstRules, nil, proto, port)
}

// DecideFunc is the decision in the form a packet filter calls it: src by
// pointer (not copied), the packet's destination address, the IP protocol
// number, and (accept, rule index or -1). A packet to one of this node's
// addresses is decided by Decide, any other by DecideRouted. It is safe for
// concurrent use.
func (n *Node) DecideFunc() func(src *certs.Identity, dst netip.Addr, proto uint8, dstPort uint16) (accept bool, rule int) {
	return func(src *certs.Identity, dst netip.Addr, proto uint8, dstPort uint16) (bool, int) {
		if n == nil || src == nil {
			return false, -1
		}
		var d Decision
		switch {
		case slices.Contains(n.addrs, dst):
			if !n.any {
				return false, -1
			}
			d = n.decideLocal(src, Proto(proto), dstPort)
		default:
			d = n.decideRouted(src, dst, Proto(proto), dstPort)
		}
		return d.Accept, d.Rule
	}
}

// AcceptsAny reports whether some rule applies to this node at all; when
// none does, every inbound packet to this node is dropped.
func (n *Node) AcceptsAny() bool { return n != nil && n.any }
