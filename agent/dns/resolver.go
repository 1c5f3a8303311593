package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/certmesh/certmesh/certs"
)

// Config is the resolver's configuration.
type Config struct {
	TrustDomain certs.TrustDomain
	Source      Source
	// Overlays are the overlay ranges: reverse (PTR) names of addresses in
	// them are answered locally, never forwarded.
	Overlays []netip.Prefix
	// Upstreams are the resolvers to forward to ("ip:port"); nil reads
	// them from ResolvConf.
	Upstreams  []string
	ResolvConf string // default /etc/resolv.conf
	// ForwardTimeout bounds one forwarded query over all upstreams
	// (default 5 s).
	ForwardTimeout time.Duration
	Now            func() time.Time // default time.Now
	Logger         *slog.Logger     // default slog.Default()
}

// Resolver answers DNS queries; it is a dns.Handler.
type Resolver struct {
	zone      string // trust domain, lower case, no trailing dot
	src       Source
	overlays  []netip.Prefix
	upstreams []string
	timeout   time.Duration
	now       func() time.Time
	log       *slog.Logger
}

// New makes a resolver.
func New(cfg Config) (*Resolver, error) {
	if _, err := certs.ParseTrustDomain(string(cfg.TrustDomain)); err != nil {
		return nil, fmt.Errorf("dns resolver: %w", err)
	}
	if cfg.Source == nil {
		return nil, errors.New("dns resolver: no peer source")
	}
	r := &Resolver{zone: string(cfg.TrustDomain), src: cfg.Source, overlays: cfg.Overlays,
		upstreams: cfg.Upstreams, timeout: cfg.ForwardTimeout, now: cfg.Now, log: cfg.Logger}
	if r.upstreams == nil {
		path := cfg.ResolvConf
		if path == "" {
			path = "/etc/resolv.conf"
		}
		cc, err := dns.ClientConfigFromFile(path)
		if err != nil {
			return nil, fmt.Errorf("dns resolver: reading the system's resolvers: %w", err)
		}
		for _, s := range cc.Servers {
			r.upstreams = append(r.upstreams, net.JoinHostPort(s, cc.Port))
		}
	}
	if r.timeout <= 0 {
		r.timeout = 5 * time.Second
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	return r, nil
}

// Answer computes the response to req as the resolver would send it over
// the given network ("udp" or "tcp"): a local answer, or the upstream's
// (forwarded unchanged, with req's ID), truncated to what the client can
// take over UDP. It never returns nil.
func (r *Resolver) Answer(ctx context.Context, req *dns.Msg, network string) *dns.Msg {
	if len(req.Question) != 1 || req.Response || req.Opcode != dns.OpcodeQuery {
		resp := new(dns.Msg)
		resp.SetRcodeFormatError(req)
		if req.Opcode != dns.OpcodeQuery {
			resp.Rcode = dns.RcodeNotImplemented
		}
		return resp
	}
	resp, ok := r.local(req, r.src.Table(), r.now())
	if !ok {
		resp = r.forward(ctx, req, network)
	}
	if network != "tcp" {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		resp.Truncate(size)
	}
	return resp
}

// ServeDNS implements dns.Handler.
func (r *Resolver) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	network := "udp"
	if w.LocalAddr().Network() == "tcp" {
		network = "tcp"
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout+time.Second)
	defer cancel()
	if err := w.WriteMsg(r.Answer(ctx, req, network)); err != nil {
		r.log.Debug("dns: writing answer", "err", err)
	}
}

// forward sends req to the upstreams in turn over network and returns the
// first answer, unchanged; SERVFAIL if none answers.
func (r *Resolver) forward(ctx context.Context, req *dns.Msg, network string) *dns.Msg {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	c := &dns.Client{Net: network, UDPSize: dns.MaxMsgSize, Timeout: r.timeout}
	for _, up := range r.upstreams {
		resp, _, err := c.ExchangeContext(ctx, req.Copy(), up)
		if err == nil && resp != nil {
			resp.Id = req.Id
			return resp
		}
		r.log.Debug("dns: forwarding", "upstream", up, "name", req.Question[0].Name, "err", err)
		if ctx.Err() != nil {
			break
		}
	}
	resp := new(dns.Msg)
	resp.SetRcode(req, dns.RcodeServerFailure)
	resp.RecursionAvailable = true
	return resp
}
