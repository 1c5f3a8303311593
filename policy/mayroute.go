package policy

import (
	"math/bits"
	"net/netip"

	"github.com/certmesh/certmesh/certs"
)

// MayRoute reports whether this node, as the source, may reach anything
// inside p through router (a peer whose certificate routes prefixes), on
// any port or protocol: whether some rule whose "from" selects this node,
// whose condition it meets and which has ports, has an address or CIDR
// destination that overlaps p where router's certificate routes it. It
// holds exactly when router's DecideRouted would accept some packet from
// this node to some address of p. An agent asks it before installing a
// peer's route: a prefix it may not reach is not routed to the router at
// all. A rule reaching part of p is enough (the router's filter decides
// per packet); "*", tags and other mesh selectors reach no routed
// address, as in DecideRouted.
func (n *Node) MayRoute(router certs.Identity, p netip.Prefix) bool {
	if n == nil || n.c == nil || len(n.c.rules) == 0 || !p.IsValid() {
		return false
	}
	p = p.Masked()
	var buf [scratchWords]uint64
	dst := n.c.ruleSet(&buf)
	for _, r := range router.Routes {
		if !r.IsValid() || !r.Overlaps(p) {
			continue
		}
		q := p // where router routes inside p: the narrower of the two
		if r.Bits() > p.Bits() {
			q = r.Masked()
		}
		n.c.dst.collectOverlap(q, dst)
	}
	for w, x := range dst {
		x &= n.from[w]
		for x != 0 {
			i := w*64 + bits.TrailingZeros64(x)
			if len(n.c.rules[i].ports) > 0 {
				return true
			}
			x &= x - 1
		}
	}
	return false
}

// sourceRules are the rules whose "from" selects src and whose condition
// src meets.
func (c *Compiled) sourceRules(src *certs.Identity) []uint64 {
	acc := make([]uint64, c.words)
	c.src.collect(src, acc)
	tpm := src.Attestation == certs.AttestationTPM
	valid := src.Attestation.Valid()
	for w := range acc {
		if !tpm {
			acc[w] &^= c.condTPM[w]
		}
		if !valid {
			acc[w] &^= c.condToken[w]
		}
	}
	return acc
}

// collectOverlap ORs into acc the rules whose address or CIDR selectors
// have an address inside q.
func (s *sideIndex) collectOverlap(q netip.Prefix, acc []uint64) {
	for a, rs := range s.addrs {
		if q.Contains(a) {
			rs.orInto(acc)
		}
	}
	for i := range s.prefixes {
		if s.prefixes[i].prefix.Overlaps(q) {
			s.prefixes[i].rules.orInto(acc)
		}
	}
}
