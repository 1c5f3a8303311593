package resolvedtest

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// serveStub answers on Stub in the host's namespace, UDP and TCP.
func (r *Resolved) serveStub(t *testing.T) {
	t.Helper()
	pc, err := r.host.ListenPacket("udp", Stub)
	if err != nil {
		t.Fatalf("resolvedtest: stub listener: %v", err)
	}
	ln, err := r.host.Listen("tcp", Stub)
	if err != nil {
		pc.Close()
		t.Fatalf("resolvedtest: stub listener: %v", err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: r}, {Listener: ln, Handler: r}} {
		go func() { _ = srv.ActivateAndServe() }()
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
}

// Route says where the stub sends name: the servers of the link whose
// routing or search domain matches it best; failing that, those of the
// links that are a default route (DefaultRoute set, or unset on a link
// without routing-only domains); failing that, the global upstream.
// Links whose interface is gone are forgotten, as resolved forgets them.
func (r *Resolved) Route(name string) []string {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	r.mu.Lock()
	defer r.mu.Unlock()
	var best []netip.Addr
	bestLen := -1
	var defaults []netip.Addr
	for idx, l := range r.links {
		if !r.exists(idx) {
			delete(r.links, idx)
			continue
		}
		routingOnly := false
		for _, d := range l.Domains {
			routingOnly = routingOnly || strings.HasPrefix(d, "~")
			d = strings.TrimPrefix(d, "~")
			if (name == d || strings.HasSuffix(name, "."+d)) && len(d) > bestLen && len(l.DNS) > 0 {
				best, bestLen = l.DNS, len(d)
			}
		}
		if (l.DefaultRoute != nil && *l.DefaultRoute) || (l.DefaultRoute == nil && !routingOnly) {
			defaults = append(defaults, l.DNS...)
		}
	}
	servers := best
	if servers == nil {
		servers = defaults
	}
	var out []string
	for _, s := range servers {
		out = append(out, netip.AddrPortFrom(s, 53).String())
	}
	if len(out) == 0 {
		out = []string{r.global}
	}
	return out
}

// ServeDNS forwards the query where Route says, from the host's namespace.
func (r *Resolved) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	network := w.LocalAddr().Network()
	resp := new(dns.Msg)
	resp.SetRcode(req, dns.RcodeServerFailure)
	if len(req.Question) == 1 {
		for _, up := range r.Route(req.Question[0].Name) {
			if m, err := r.exchange(network, up, req); err == nil {
				resp = m
				break
			}
		}
	}
	_ = w.WriteMsg(resp)
}

func (r *Resolved) exchange(network, server string, req *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := r.host.DialContext(ctx, network, server)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	co := &dns.Conn{Conn: c}
	if err := co.WriteMsg(req); err != nil {
		return nil, err
	}
	return co.ReadMsg()
}
