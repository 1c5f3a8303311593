package policy

import (
	"math/bits"
	"net/netip"
	"slices"

	"github.com/certmesh/certmesh/certs"
)

// scratchWords is how many rule-set words Decide keeps on the stack
// (policies of up to 1024 rules allocate nothing).
const scratchWords = 16

// ruleSet is an empty rule set: in buf (on the caller's stack) when it
// fits.
func (c *Compiled) ruleSet(buf *[scratchWords]uint64) []uint64 {
	if c.words <= scratchWords {
		return buf[:c.words]
	}
	return make([]uint64, c.words)
}

// Decide says whether a packet from the peer src to the node dst (the one
// enforcing the policy), of protocol proto to port (ignored for protocols
// other than TCP and UDP), is accepted, and by which rule. src and dst are
// identities certs.Verify returned. A rule accepts when its "from" selects
// src, its condition holds, and either a destination other than svc:NAME
// selects dst and one of its ports matches, or one of its svc:NAME
// destinations is a service dst's certificate offers at proto and port.
func (c *Compiled) Decide(src certs.Identity, dst certs.Identity, proto Proto, port uint16) Decision {
	if c == nil || len(c.rules) == 0 {
		return denied
	}
	var buf, sbuf [scratchWords]uint64
	dstRules := c.ruleSet(&buf)
	c.dst.collect(&dst, dstRules)
	var svc []uint64
	if len(dst.Services) > 0 {
		svc = c.ruleSet(&sbuf)
		if !c.dst.collectServices(dst.Services, proto, port, svc) {
			svc = nil
		}
	}
	return c.decide(&src, dstRules, svc, proto, port)
}

// DecideRouted says whether a packet from the peer src that the node
// router forwards (a subnet router or exit node, not the packet's
// destination) to the address dst is accepted. It is, when one of the
// prefixes router's certificate routes contains dst and a rule's "from"
// selects src, its condition holds, one of its address or CIDR
// destinations contains dst and one of its ports matches. No other
// destination selects a routed address: "*", tags, hosts, devices, users
// and groups name mesh nodes, and svc:NAME the services a certificate
// offers, which a host behind a router has none of.
func (c *Compiled) DecideRouted(src, router certs.Identity, dst netip.Addr, proto Proto, port uint16) Decision {
	if c == nil || len(c.rules) == 0 || !serves(router.Routes, dst) {
		return denied
	}
	var buf [scratchWords]uint64
	dstRules := c.ruleSet(&buf)
	c.dst.collectAddr(dst, dstRules)
	return c.decide(&src, dstRules, nil, proto, port)
}

// serves reports whether one of routes contains dst.
func serves(routes []netip.Prefix, dst netip.Addr) bool {
	return slices.ContainsFunc(routes, func(p netip.Prefix) bool { return p.Contains(dst) })
}

// decide takes the first rule that selects src, whose condition src meets,
// and that is in svcRules (its service matched already), or in dstRules
// with a port that matches. svcRules may be nil.
func (c *Compiled) decide(src *certs.Identity, dstRules, svcRules []uint64, proto Proto, port uint16) Decision {
	var buf [scratchWords]uint64
	acc := c.ruleSet(&buf)
	c.src.collect(src, acc)
	tpm := src.Attestation == certs.AttestationTPM
	valid := src.Attestation.Valid()
	for w := range acc {
		d := dstRules[w]
		if svcRules != nil {
			d |= svcRules[w]
		}
		x := acc[w] & d
		if !tpm {
			x &^= c.condTPM[w]
		}
		if !valid {
			x &^= c.condToken[w]
		}
		for x != 0 {
			b := bits.TrailingZeros64(x)
			i := w*64 + b
			if svcRules != nil && svcRules[w]&(1<<b) != 0 {
				return Decision{Accept: true, Rule: i, RuleName: c.rules[i].name}
			}
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
