package dns

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// Explanation is what the resolver answers to one question, and why:
// the certificates the records come from, or that the name is not the
// resolver's to answer and went to the upstreams.
type Explanation struct {
	Answer *dns.Msg
	// Forwarded: outside the trust domain and the overlay's reverse
	// names; Answer is the upstreams' (SERVFAIL if none answered).
	Forwarded bool
	Upstreams []string
	// Sources are the verified peers whose certificates the local answer
	// was taken from (none for a negative answer).
	Sources []Peer
}

// Explain answers the question (name, qtype) as a query over TCP would be
// answered, and says where the answer comes from.
func (r *Resolver) Explain(ctx context.Context, name string, qtype uint16) (Explanation, error) {
	if _, ok := dns.IsDomainName(name); !ok || len(name) > 253 {
		return Explanation{}, fmt.Errorf("%q is not a domain name", name)
	}
	req := new(dns.Msg)
	req.SetQuestion(dns.Fqdn(name), qtype)
	t := r.src.Table()
	if _, local := r.local(req, t, r.now()); !local {
		return Explanation{Answer: r.forward(ctx, req, "tcp"), Forwarded: true, Upstreams: append([]string{}, r.upstreams...)}, nil
	}
	e := Explanation{Answer: r.Answer(ctx, req, "tcp")}
	seen := map[*Peer]bool{}
	add := func(ps []*Peer) {
		for _, p := range alive(ps, r.now()) {
			if !seen[p] {
				seen[p] = true
				e.Sources = append(e.Sources, *p)
			}
		}
	}
	for _, rr := range e.Answer.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			a, _ := netip.AddrFromSlice(rr.A.To4())
			add(t.addrs[a])
		case *dns.AAAA:
			a, _ := netip.AddrFromSlice(rr.AAAA)
			add(t.addrs[a])
		case *dns.PTR:
			add(t.hosts[r.hostLabel(rr.Ptr)])
		case *dns.SRV:
			add(t.hosts[r.hostLabel(rr.Target)])
		}
	}
	return e, nil
}

// hostLabel is the hostname label of <hostname>.<td>.
func (r *Resolver) hostLabel(fqdn string) string {
	rel, _ := r.relative(strings.ToLower(fqdn))
	return rel
}

// Lookup resolves a mesh name for a local client that is not a DNS client
// (the SOCKS5 proxy): the first IPv4 address (else IPv6) of the live peer
// named <hostname>.<td>. inZone is false for a name outside the trust
// domain; err says why a name inside it has no address.
func (r *Resolver) Lookup(name string) (addr netip.Addr, inZone bool, err error) {
	rel, inZone := r.relative(strings.ToLower(dns.Fqdn(name)))
	if !inZone {
		return netip.Addr{}, false, nil
	}
	var v6 netip.Addr
	for _, p := range alive(r.src.Table().hosts[rel], r.now()) {
		for _, a := range p.Addresses {
			if a.Is4() {
				return a, true, nil
			}
			if !v6.IsValid() {
				v6 = a
			}
		}
	}
	if v6.IsValid() {
		return v6, true, nil
	}
	return netip.Addr{}, true, fmt.Errorf("no verified peer is named %s", name)
}
