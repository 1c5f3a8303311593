package relayc

import (
	"cmp"
	"context"
	"crypto/tls"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Server is one relay as the CA lists it (wire.RelayServer): its TURN/STUN
// UDP port, a second STUN port for netcheck's mapping test, and its TLS
// port, any of which may be empty, and the password this relay checks.
type Server struct {
	Name     string `json:"name,omitempty"`
	UDP      string `json:"udp,omitempty"`     // host:port
	UDPAlt   string `json:"udp_alt,omitempty"` // host:port
	TLS      string `json:"tls,omitempty"`     // host:port
	Password string `json:"-"`
}

// Probe is one STUN Binding round trip to a relay over one transport.
type Probe struct {
	Transport Transport      `json:"transport"`
	Addr      string         `json:"addr"`
	RTT       time.Duration  `json:"rtt_ns,omitempty"`
	Mapped    netip.AddrPort `json:"mapped,omitzero"` // our address as the relay saw it
	Err       string         `json:"error,omitempty"`
}

// OK reports whether the relay answered.
func (p Probe) OK() bool { return p.Err == "" }

// ProbeRelay opens a fresh link to addr over kind (verifying a TLS relay
// with tlsConf), sends one STUN Binding request and returns the round trip
// (not counting the TLS handshake) and the mapped address.
func ProbeRelay(ctx context.Context, kind Transport, addr string, tlsConf *tls.Config, log *slog.Logger) Probe {
	p := Probe{Transport: kind, Addr: addr}
	l, err := dial(ctx, kind, addr, tlsConf, log)
	if err != nil {
		p.Err = err.Error()
		return p
	}
	defer l.close()
	rtt, mapped, err := l.ping(ctx)
	if err != nil {
		p.Err = err.Error()
		return p
	}
	p.RTT, p.Mapped = rtt, mapped
	return p
}

// choice is a relay and the transport to allocate on, with its latency.
type choice struct {
	server Server
	probe  Probe
}

// rank probes every relay at once (UDP, and TLS where UDP does not answer
// within timeout) and orders the ones that answered nearest first. A relay
// is reached by UDP when it answers on UDP at all: TLS only stands in for
// blocked UDP.
func rank(ctx context.Context, servers []Server, tlsConf *tls.Config, timeout time.Duration, log *slog.Logger) ([]choice, []Probe) {
	probe := func(kind Transport, addr string) Probe {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return ProbeRelay(ctx, kind, addr, tlsConf, log)
	}
	out := make([]choice, len(servers))
	probes := make([][]Probe, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() {
			if s.UDP != "" {
				p := probe(UDP, s.UDP)
				probes[i] = append(probes[i], p)
				if p.OK() {
					out[i] = choice{s, p}
					return
				}
			}
			if s.TLS != "" {
				p := probe(TLS, s.TLS)
				probes[i] = append(probes[i], p)
				if p.OK() {
					out[i] = choice{s, p}
				}
			}
		})
	}
	wg.Wait()
	out = slices.DeleteFunc(out, func(c choice) bool { return c.probe.Transport == "" })
	slices.SortStableFunc(out, func(a, b choice) int { return cmp.Compare(a.probe.RTT, b.probe.RTT) })
	return out, slices.Concat(probes...)
}
