package netcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/relayc"
	"github.com/certmesh/certmesh/certs"
)

// The embedded relay's default UDP ports (ca.DefaultRelayUDPPort and
// ca.DefaultRelayUDPAltPort; the agent does not link the CA).
const (
	DefaultSTUNPort    = 3478
	DefaultSTUNAltPort = 3479
)

// ServerRelay is the relay certmesh-server run embeds, as seen from its
// URL (what `certmesh agent --server` is given): STUN and TURN on UDP
// ports 3478 and 3479 of the URL's host, TURN over TLS on the URL's own
// port. A server whose default ports were taken listens elsewhere: name
// those with --stun and --relay.
func ServerRelay(server string) (relayc.Server, error) {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return relayc.Server{}, fmt.Errorf("server URL %q: want https://host[:port]", server)
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	h := u.Hostname()
	return relayc.Server{Name: "server",
		UDP:    net.JoinHostPort(h, strconv.Itoa(DefaultSTUNPort)),
		UDPAlt: net.JoinHostPort(h, strconv.Itoa(DefaultSTUNAltPort)),
		TLS:    net.JoinHostPort(h, port)}, nil
}

// ParseRelay reads a --relay value: comma-separated name=NAME, udp=HOST:PORT,
// udp_alt=HOST:PORT and tls=HOST:PORT, at least one of udp and tls.
func ParseRelay(s string) (relayc.Server, error) {
	var r relayc.Server
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return r, fmt.Errorf("relay %q: %q is not key=value (name, udp, udp_alt, tls)", s, part)
		}
		var dst *string
		switch k {
		case "name":
			r.Name = v
			continue
		case "udp":
			dst = &r.UDP
		case "udp_alt":
			dst = &r.UDPAlt
		case "tls":
			dst = &r.TLS
		default:
			return r, fmt.Errorf("relay %q: unknown key %q (want name, udp, udp_alt, tls)", s, k)
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			return r, fmt.Errorf("relay %q: %s=%q: want host:port", s, k, v)
		}
		*dst = v
	}
	if r.UDP == "" && r.TLS == "" {
		return r, fmt.Errorf("relay %q: give udp=HOST:PORT or tls=HOST:PORT", s)
	}
	return r, nil
}

// rootFile is where the agent keeps the pinned root (agent/state.go).
const rootFile = "root.crt"

// StateRoots reads the pinned roots of an enrolled agent's state directory
// (its root certificate, and the trust domain of its machine certificate),
// which verify relays reached over TLS.
func StateRoots(stateDir string) (*certs.Roots, error) {
	b, err := agent.ReadBundle(stateDir)
	if err != nil {
		return nil, err
	}
	td, err := certs.TrustDomainOf(b.Machine)
	if err != nil {
		return nil, fmt.Errorf("trust domain of the machine certificate: %w", err)
	}
	pem, err := os.ReadFile(filepath.Join(stateDir, rootFile))
	if err != nil {
		return nil, fmt.Errorf("reading the pinned root: %w", err)
	}
	cs, err := certs.ParsePEM(pem)
	if err != nil {
		return nil, fmt.Errorf("reading the pinned root: %w", err)
	}
	return certs.NewRoots(td, cs...)
}

// AgentRelays are the relays the CA lists for the agent running on
// stateDir, as its status says (the relay client's last credentials,
// without passwords): what netcheck probes when given no relay. An error
// says the agent is not running, runs no relay client or has no
// credentials yet.
func AgentRelays(ctx context.Context, stateDir string) ([]relayc.Server, error) {
	st, err := agent.NewClient(stateDir).Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("asking the agent for its relays: %w", err)
	}
	if st.Relay == nil || len(st.Relay.Relays) == 0 {
		return nil, errors.New("the agent holds no relay list (no relay client, or no credentials yet)")
	}
	return st.Relay.Relays, nil
}
