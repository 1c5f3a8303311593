package agent

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"

	mdns "github.com/miekg/dns"

	"github.com/certmesh/certmesh/agent/dns"
	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
)

// DNSPort is where the agent's resolver listens, on the node's first
// overlay IPv4 address, UDP and TCP (kernel TUN mode).
const DNSPort = 53

// DNSConfig configures the agent's resolver for the trust domain.
type DNSConfig struct {
	// Off: no resolver listens and split DNS is not set up (the SOCKS5
	// proxy of userspace mode still resolves mesh names).
	Off bool
	// Upstreams are the resolvers queries outside the trust domain go to
	// ("ip:port"); empty: those of ResolvConf, read at start, before split
	// DNS is set up.
	Upstreams  []string
	ResolvConf string // default /etc/resolv.conf
	// NoSplitDNS leaves the system's resolver configuration alone.
	NoSplitDNS bool
	// ResolvedBus is the D-Bus address systemd-resolved is reached at
	// ("": the system bus).
	ResolvedBus string
}

// DNSStatus is how the agent's resolver stands.
type DNSStatus struct {
	// Listen is where the resolver answers ("ip:port", UDP and TCP);
	// empty when it does not listen (userspace mode, off, or Error).
	Listen    string   `json:"listen,omitempty"`
	Upstreams []string `json:"upstreams"`
	// SplitDNS says how the system resolver sends the trust domain here,
	// or what to do when it cannot (splitdns.go).
	SplitDNS string `json:"split_dns,omitempty"`
	Error    string `json:"error,omitempty"`
}

// nameService is the resolver: the table the peer set feeds (names.go),
// the resolver over it, and, in kernel mode, its listener and split DNS.
type nameService struct {
	store    dns.Store
	resolver *dns.Resolver

	mu     sync.Mutex
	status DNSStatus
}

// openNames builds the resolver over the peer set's table. The upstreams
// are read now, before split DNS changes what the system resolves with,
// and never include this node's own addresses (no loop through split DNS).
func (a *Agent) openNames(self certs.Identity, overlays []netip.Prefix) error {
	cfg := a.cfg.DNS
	ups := cfg.Upstreams
	if len(ups) == 0 {
		path := cfg.ResolvConf
		if path == "" {
			path = "/etc/resolv.conf"
		}
		cc, err := mdns.ClientConfigFromFile(path)
		if err != nil {
			a.cfg.Logger.Warn("dns: no system resolvers to forward to; names outside the trust domain will fail", "err", err)
		}
		for _, s := range serversOf(cc) {
			if ip, err := netip.ParseAddr(s); err == nil && self.HasAddress(ip.Unmap()) {
				continue
			}
			ups = append(ups, net.JoinHostPort(s, cc.Port))
		}
	}
	r, err := dns.New(dns.Config{TrustDomain: self.TrustDomain, Source: &a.names.store, Overlays: overlays,
		Upstreams: append([]string{}, ups...), Now: a.cfg.Now, Logger: a.cfg.Logger.With("component", "dns")})
	if err != nil {
		return err
	}
	a.names.resolver = r
	a.names.status.Upstreams = slices.Clone(ups)
	a.peers.feedNames(&a.names.store)
	return nil
}

func serversOf(cc *mdns.ClientConfig) []string {
	if cc == nil {
		return nil
	}
	return cc.Servers
}

// serveNames starts the resolver on the first overlay IPv4 address (kernel
// TUN mode) and sets split DNS up; stop undoes both. A resolver that cannot
// listen leaves the agent running, and status says why.
func (a *Agent) serveNames(ctx context.Context) (stop func()) {
	if a.cfg.DNS.Off || a.cfg.Mode != wgdev.KernelTUN {
		return func() {}
	}
	a.mu.Lock()
	self := a.self
	a.mu.Unlock()
	var v4 netip.Addr
	for _, ad := range self.Addresses {
		if ad.Is4() {
			v4 = ad
			break
		}
	}
	log := a.cfg.Logger.With("component", "dns")
	if !v4.IsValid() {
		a.names.setError("no IPv4 overlay address to listen on")
		return func() {}
	}
	srv, err := dns.Listen(ctx, a.names.resolver, netip.AddrPortFrom(v4, DNSPort))
	if err != nil {
		log.Error("dns: the resolver is not serving: mesh names do not resolve on this node", "err", err)
		a.names.setError(err.Error())
		return func() {}
	}
	a.names.mu.Lock()
	a.names.status.Listen = srv.UDPAddr.String()
	a.names.mu.Unlock()
	log.Info("dns: resolver serving the trust domain", "listen", srv.UDPAddr, "domain", self.TrustDomain,
		"upstreams", a.names.status.Upstreams)
	undo := a.setupSplitDNS(ctx, v4, self.TrustDomain)
	return func() {
		undo()
		_ = srv.Close()
	}
}

func (n *nameService) setError(msg string) {
	n.mu.Lock()
	n.status.Error = msg
	n.mu.Unlock()
}

func (n *nameService) setSplit(msg string) {
	n.mu.Lock()
	n.status.SplitDNS = msg
	n.mu.Unlock()
}

func (n *nameService) statusCopy() *DNSStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.status
	st.Upstreams = slices.Clone(st.Upstreams)
	return &st
}

// feedNames attaches the resolver's table to the set and fills it.
func (m *peerSet) feedNames(s *dns.Store) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.names = s
	m.feedNamesLocked()
}
