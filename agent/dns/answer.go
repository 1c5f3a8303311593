package dns

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// TTLs of local answers: short, since a peer's removal must not outlive
// it in a client's cache for long.
const (
	answerTTL   = 5  // seconds
	negativeTTL = 10 // seconds, the SOA minimum for NXDOMAIN/NODATA
)

// local decides whether the question is the resolver's to answer (inside
// the trust domain, or a reverse name inside an overlay range), and if so
// answers it from t. ok is false for a query to forward.
func (r *Resolver) local(req *dns.Msg, t *Table, now time.Time) (resp *dns.Msg, ok bool) {
	q := req.Question[0]
	name := strings.ToLower(dns.Fqdn(q.Name))
	if rev, isRev := r.reverse(name); isRev {
		return r.answerPTR(req, q, rev, t, now), true
	}
	rel, inZone := r.relative(name)
	if !inZone {
		return nil, false
	}
	resp = new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	resp.RecursionAvailable = true
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		resp.Rcode = dns.RcodeRefused
		return resp, true
	}
	labels := dns.SplitDomainName(rel)
	switch {
	case rel == "":
		if q.Qtype == dns.TypeSOA {
			resp.Answer = append(resp.Answer, r.soa())
		} else {
			resp.Ns = append(resp.Ns, r.soa())
		}
	case len(labels) == 1:
		peers := alive(t.hosts[labels[0]], now)
		if len(peers) == 0 {
			return r.nxdomain(resp), true
		}
		resp.Answer = r.addresses(name, q.Qtype, peers)
	case len(labels) == 2 && strings.HasPrefix(labels[0], "_") && (labels[1] == "_tcp" || labels[1] == "_udp"):
		provs := t.services[labels[0][1:]+"/"+labels[1][1:]]
		var live []provider
		for _, p := range provs {
			if alivePeer(p.peer, now) {
				live = append(live, p)
			}
		}
		if len(live) == 0 {
			return r.nxdomain(resp), true
		}
		if q.Qtype == dns.TypeSRV || q.Qtype == dns.TypeANY {
			for _, p := range live {
				target := dns.Fqdn(string(p.peer.Hostname) + "." + r.zone)
				resp.Answer = append(resp.Answer, &dns.SRV{Hdr: hdr(name, dns.TypeSRV), Priority: 0, Weight: 1, Port: p.port, Target: target})
				resp.Extra = append(resp.Extra, r.addresses(target, dns.TypeANY, []*Peer{p.peer})...)
			}
		}
	default:
		return r.nxdomain(resp), true
	}
	if len(resp.Answer) == 0 && resp.Rcode == dns.RcodeSuccess && len(resp.Ns) == 0 {
		resp.Ns = append(resp.Ns, r.soa()) // NODATA (RFC 2308)
	}
	return resp, true
}

func alivePeer(p *Peer, now time.Time) bool { return live(p, now) }

func alive(ps []*Peer, now time.Time) []*Peer {
	var out []*Peer
	for _, p := range ps {
		if live(p, now) {
			out = append(out, p)
		}
	}
	return out
}

// addresses are the A (qtype A or ANY) and AAAA (AAAA or ANY) records of
// peers under name.
func (r *Resolver) addresses(name string, qtype uint16, peers []*Peer) []dns.RR {
	var rrs []dns.RR
	for _, p := range peers {
		for _, a := range p.Addresses {
			switch {
			case a.Is4() && (qtype == dns.TypeA || qtype == dns.TypeANY):
				rrs = append(rrs, &dns.A{Hdr: hdr(name, dns.TypeA), A: a.AsSlice()})
			case a.Is6() && (qtype == dns.TypeAAAA || qtype == dns.TypeANY):
				rrs = append(rrs, &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: a.AsSlice()})
			}
		}
	}
	return rrs
}

func (r *Resolver) answerPTR(req *dns.Msg, q dns.Question, a netip.Addr, t *Table, now time.Time) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	resp.RecursionAvailable = true
	peers := alive(t.addrs[a], now)
	if !a.IsValid() || len(peers) == 0 {
		return r.nxdomain(resp)
	}
	if q.Qtype == dns.TypePTR || q.Qtype == dns.TypeANY {
		for _, p := range peers {
			resp.Answer = append(resp.Answer, &dns.PTR{Hdr: hdr(q.Name, dns.TypePTR), Ptr: dns.Fqdn(string(p.Hostname) + "." + r.zone)})
		}
	}
	return resp
}

func (r *Resolver) nxdomain(resp *dns.Msg) *dns.Msg {
	resp.Rcode = dns.RcodeNameError
	resp.Answer = nil
	resp.Ns = []dns.RR{r.soa()}
	return resp
}

func (r *Resolver) soa() dns.RR {
	return &dns.SOA{Hdr: dns.RR_Header{Name: dns.Fqdn(r.zone), Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: negativeTTL},
		Ns: dns.Fqdn(r.zone), Mbox: "hostmaster." + dns.Fqdn(r.zone), Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: negativeTTL}
}

func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: answerTTL}
}

// relative strips the trust domain from a lower-case FQDN: "" for the
// domain itself; ok false outside it.
func (r *Resolver) relative(name string) (rel string, ok bool) {
	zone := dns.Fqdn(r.zone)
	if name == zone {
		return "", true
	}
	if strings.HasSuffix(name, "."+zone) {
		return name[:len(name)-len(zone)-1], true
	}
	return "", false
}

// reverse reports whether name is a reverse-lookup name inside one of the
// overlay ranges (isRev), and the address it names.
func (r *Resolver) reverse(name string) (addr netip.Addr, isRev bool) {
	var a netip.Addr
	switch {
	case strings.HasSuffix(name, ".in-addr.arpa."):
		a = parseReverse(strings.TrimSuffix(name, ".in-addr.arpa."), 4, 10, 8)
	case strings.HasSuffix(name, ".ip6.arpa."):
		a = parseReverse(strings.TrimSuffix(name, ".ip6.arpa."), 32, 16, 4)
	default:
		return netip.Addr{}, false
	}
	for _, o := range r.overlays {
		if a.IsValid() && o.Contains(a) {
			return a, true
		}
	}
	return netip.Addr{}, false // partial names and other addresses are forwarded
}

// parseReverse reads n labels, least significant first, each a number in
// base with bits bits, into an address; invalid if the name is anything
// else.
func parseReverse(s string, n, base, bits int) netip.Addr {
	labels := strings.Split(s, ".")
	if len(labels) != n {
		return netip.Addr{}
	}
	b := make([]byte, n*bits/8)
	for i, l := range labels {
		v, err := strconv.ParseUint(l, base, bits)
		if err != nil || strconv.FormatUint(v, base) != l {
			return netip.Addr{}
		}
		pos := n - 1 - i // most significant first
		if bits == 8 {
			b[pos] = byte(v)
		} else {
			b[pos/2] |= byte(v) << (4 * (1 - pos%2))
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
