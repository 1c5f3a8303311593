package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/spf13/pflag"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/internal/cli"
)

// dnsFlags are the agent's flags for its resolver of the trust domain.
type dnsFlags struct {
	on, split bool
	upstreams []string
	bus       string
}

func (d *dnsFlags) add(f *pflag.FlagSet) {
	f.BoolVar(&d.on, "dns", true, "answer DNS for the trust domain from the verified peers, on the first overlay IPv4 address, port 53 (kernel TUN mode), forwarding other names to the system's resolvers")
	f.BoolVar(&d.split, "split-dns", true, "point systemd-resolved at the agent's resolver for the trust domain on the tunnel interface (reverted when the agent stops)")
	f.StringVar(&d.bus, "resolved-bus", "", "D-Bus address of systemd-resolved for split DNS (default: the system bus)")
	f.StringArrayVar(&d.upstreams, "dns-upstream", nil, "resolver ip:port for names outside the trust domain (repeatable; default: those of /etc/resolv.conf at start)")
}

func (d *dnsFlags) config() (agent.DNSConfig, error) {
	for _, u := range d.upstreams {
		if _, err := netip.ParseAddrPort(u); err != nil {
			return agent.DNSConfig{}, cli.Usagef("--dns-upstream %q: want ip:port (%v)", u, err)
		}
	}
	return agent.DNSConfig{Off: !d.on, NoSplitDNS: !d.split, Upstreams: d.upstreams, ResolvedBus: d.bus}, nil
}

// dnsLine is how the agent's resolver stands, for certmesh status.
func dnsLine(d *agent.DNSStatus) string {
	var s string
	switch {
	case d.Error != "":
		s = "NOT SERVING: " + d.Error
	case d.Listen == "":
		s = "not listening (userspace mode or --dns=false)"
	default:
		s = "serving on " + d.Listen
	}
	s += fmt.Sprintf("; other names to %s", strings.Join(d.Upstreams, ","))
	if len(d.Upstreams) == 0 {
		s += "none (they fail)"
	}
	if d.SplitDNS != "" {
		s += "; split DNS: " + d.SplitDNS
	}
	return s
}
