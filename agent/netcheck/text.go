package netcheck

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/certmesh/certmesh/agent/relayc"
)

// WriteText prints the report for people, in the manner of
// `tailscale netcheck`.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Report:\n")
	fmt.Fprintf(&b, "\t* UDP: %v\n", r.UDP)
	addrs := "none found"
	if len(r.PublicAddrs) > 0 {
		addrs = joinAddrs(r.PublicAddrs)
	}
	fmt.Fprintf(&b, "\t* Public address: %s\n", addrs)
	nat := "no (the public address is this host's)"
	if r.NAT {
		nat = "yes"
	}
	if len(r.PublicAddrs) > 0 {
		fmt.Fprintf(&b, "\t* Behind NAT: %s\n", nat)
	}
	mapping := string(r.Mapping)
	switch r.Mapping {
	case MappingIndependent:
		mapping += " (one public address and port for every destination; tested across " + r.MappingTested + "): direct paths can be punched"
	case MappingDependent:
		mapping += " (another public port per destination, tested across " + r.MappingTested + "): direct paths only to reachable peers, else the relay"
	case MappingUnknown:
		mapping += " (fewer than two STUN servers answered; give two with --stun)"
	}
	fmt.Fprintf(&b, "\t* Mapping varies by destination: %s\n", mapping)
	if len(r.STUN) > 0 {
		fmt.Fprintf(&b, "\t* STUN (from local port %d):\n", r.LocalPort)
		for _, s := range r.STUN {
			if s.Err != "" {
				fmt.Fprintf(&b, "\t\t- %s: %s\n", s.Server, s.Err)
				continue
			}
			fmt.Fprintf(&b, "\t\t- %s: %s, sees %s\n", s.Server, ms(s.RTT), s.Mapped)
		}
	}
	if len(r.Relays) > 0 {
		fmt.Fprintf(&b, "\t* Nearest relay: %s\n", cmpOr(r.Nearest, "none answered"))
		fmt.Fprintf(&b, "\t* Relay latencies:\n")
		for _, rr := range r.Relays {
			fmt.Fprintf(&b, "\t\t- %s: udp %s, tls %s\n", rr.Name, probeText(rr.UDP), probeText(rr.TLS))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func probeText(p *relayc.Probe) string {
	switch {
	case p == nil:
		return "-"
	case p.OK():
		return ms(p.RTT)
	default:
		return "unreachable (" + p.Err + ")"
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

func joinAddrs[T fmt.Stringer](as []T) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
