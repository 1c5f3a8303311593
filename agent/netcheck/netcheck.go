// Package netcheck reports what the network allows an agent: whether UDP
// gets out at all, its public address, whether its NAT maps one local port
// to the same public address and port whatever the destination
// (endpoint-independent mapping, which lets two agents punch a direct path)
// or not, and each relay's reachability and latency over UDP and TLS: the
// facts `certmesh netcheck` prints, like `tailscale netcheck`.
package netcheck

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/certmesh/certmesh/agent/relayc"
)

// Mapping is the NAT's mapping behaviour (RFC 4787 §4.1).
type Mapping string

const (
	// MappingIndependent: the same public address and port towards every
	// destination (no NAT, or a NAT direct paths can be punched through).
	MappingIndependent Mapping = "endpoint-independent"
	// MappingDependent: another public address or port per destination (a
	// "symmetric" NAT): direct paths need the peer to be reachable; else
	// the relay.
	MappingDependent Mapping = "endpoint-dependent"
	// MappingUnknown: fewer than two STUN servers answered.
	MappingUnknown Mapping = "unknown"
)

// Config says what to probe.
type Config struct {
	// STUN servers (host:port), all asked from one local UDP socket; the
	// mapping test needs two that answer at distinct addresses or ports.
	STUN []string
	// Relays are probed over UDP and TLS (a STUN Binding each); their UDP
	// and UDPAlt ports are STUN servers too.
	Relays []relayc.Server
	// TLS verifies relays reached over TLS (relayc.TLSConfig); without it
	// TLS probes report that nothing verifies them.
	TLS     *tls.Config
	Timeout time.Duration // for each probe (0: 3 s)
	Log     *slog.Logger
}

// Report is what netcheck found.
type Report struct {
	// UDP is whether any STUN server or relay answered over UDP.
	UDP bool `json:"udp"`
	// PublicAddrs are the distinct mapped addresses the STUN servers saw.
	PublicAddrs []netip.AddrPort `json:"public_addrs,omitempty"`
	// Mapping is the NAT's mapping behaviour, and MappingTested whether
	// it was found across server "addresses" or only "ports" of one host.
	Mapping       Mapping `json:"mapping"`
	MappingTested string  `json:"mapping_tested,omitempty"`
	// NAT is whether the public address is not one of this host's.
	NAT bool `json:"nat"`
	// LocalPort is the port of the one socket the STUN requests left from.
	LocalPort uint16        `json:"local_port"`
	STUN      []STUNResult  `json:"stun"`
	Relays    []RelayResult `json:"relays"`
	// Nearest is the relay an agent would use (the shortest round trip,
	// UDP before TLS), empty if none answered.
	Nearest string `json:"nearest,omitempty"`
}

// RelayResult is one relay's reachability.
type RelayResult struct {
	Name string        `json:"name"`
	UDP  *relayc.Probe `json:"udp,omitempty"`
	TLS  *relayc.Probe `json:"tls,omitempty"`
}

// Run probes everything in cfg at once and reports.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if len(cfg.STUN) == 0 && len(cfg.Relays) == 0 {
		return nil, fmt.Errorf("netcheck: no STUN server and no relay to probe")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Second
	}
	c, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, fmt.Errorf("netcheck: opening a UDP socket: %w", err)
	}
	defer c.Close()
	r := &Report{LocalPort: uint16(c.LocalAddr().(*net.UDPAddr).Port), Relays: make([]RelayResult, len(cfg.Relays))}
	stun := slices.Clone(cfg.STUN)
	for _, s := range cfg.Relays {
		for _, a := range []string{s.UDP, s.UDPAlt} {
			if a != "" && !slices.Contains(stun, a) {
				stun = append(stun, a)
			}
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		sctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
		r.STUN = bindAll(sctx, c, stun)
	})
	for i, s := range cfg.Relays {
		r.Relays[i].Name = s.Name
		if s.Name == "" {
			r.Relays[i].Name = cmpOr(s.UDP, s.TLS)
		}
		for _, t := range []struct {
			kind relayc.Transport
			addr string
			dst  **relayc.Probe
		}{{relayc.UDP, s.UDP, &r.Relays[i].UDP}, {relayc.TLS, s.TLS, &r.Relays[i].TLS}} {
			if t.addr == "" {
				continue
			}
			wg.Go(func() {
				pctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
				defer cancel()
				p := relayc.Probe{Transport: t.kind, Addr: t.addr, Err: "no TLS configuration verifies the relay (pinned roots)"}
				if t.kind == relayc.UDP || cfg.TLS != nil {
					p = relayc.ProbeRelay(pctx, t.kind, t.addr, cfg.TLS, cfg.Log)
				}
				*t.dst = &p
			})
		}
	}
	wg.Wait()
	r.summarize()
	return r, ctx.Err()
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// summarize derives UDP, the public addresses, the mapping and the nearest
// relay from the probes.
func (r *Report) summarize() {
	var answered []STUNResult
	for _, s := range r.STUN {
		if s.Err == "" && s.Mapped.IsValid() {
			answered = append(answered, s)
			if !slices.Contains(r.PublicAddrs, s.Mapped) {
				r.PublicAddrs = append(r.PublicAddrs, s.Mapped)
			}
		}
	}
	r.UDP = len(answered) > 0
	r.Mapping = MappingUnknown
	if distinct := distinctServers(answered); len(distinct) >= 2 {
		r.Mapping, r.MappingTested = MappingIndependent, "ports"
		if len(r.PublicAddrs) > 1 {
			r.Mapping = MappingDependent
		}
		for _, s := range distinct[1:] {
			if s.Addr.Addr() != distinct[0].Addr.Addr() {
				r.MappingTested = "addresses"
			}
		}
	}
	var best time.Duration
	for _, rr := range r.Relays {
		for _, p := range []*relayc.Probe{rr.UDP, rr.TLS} {
			if p == nil || !p.OK() {
				continue
			}
			if p.Transport == relayc.UDP {
				r.UDP = true
			}
			if r.Nearest == "" || p.RTT < best {
				r.Nearest, best = rr.Name, p.RTT
			}
			break // UDP before TLS: TLS stands in only for blocked UDP
		}
	}
	if len(r.PublicAddrs) > 0 {
		r.NAT = !isLocal(r.PublicAddrs[0].Addr()) || r.PublicAddrs[0].Port() != r.LocalPort
	}
}

// distinctServers keeps one answer per server address.
func distinctServers(rs []STUNResult) []STUNResult {
	var out []STUNResult
	for _, s := range rs {
		if !slices.ContainsFunc(out, func(o STUNResult) bool { return o.Addr == s.Addr }) {
			out = append(out, s)
		}
	}
	return out
}

// isLocal reports whether ip is one of this host's addresses.
func isLocal(ip netip.Addr) bool {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Unmap() == ip {
			return true
		}
	}
	return false
}
