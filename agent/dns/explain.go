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
