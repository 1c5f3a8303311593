package agent

import (
	"context"
	"net/netip"
	"slices"

	"github.com/certmesh/certmesh/agent/path"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/endpoint"
)

// pathLayer is the agent's agent/path: the Bind that shares WireGuard's
// socket with STUN and path probes (installed through wgdev's WrapBind,
// under the handshake limiter) and the Manager that probes each admitted
// peer's verified candidates, chooses its path and sets its endpoint.
type pathLayer struct {
	bind *path.Bind
	mgr  *path.Manager // nil until the device is open
}

// startPaths builds the Manager on the open device: probes only go where
// the endpoint policy allows, and a change of this agent's reflexive
// addresses re-signs its advertisement at the next check. The STUN servers
// are --stun's and the relays' (relaySTUN).
func (a *Agent) startPaths(eps endpointPolicy, relaySTUN []netip.AddrPort) error {
	stun := slices.Clone(a.cfg.STUNServers)
	var relayHosts []netip.Addr
	for _, s := range relaySTUN {
		if !slices.Contains(stun, s) {
			stun = append(stun, s)
		}
		relayHosts = append(relayHosts, s.Addr())
	}
	m, err := path.New(path.Config{
		Bind: a.paths.bind, PrivateKey: a.keys.wg, Policy: eps.check,
		SetEndpoint: a.dev.SetEndpoint, Kick: a.dev.Kick, STUNServers: stun, RelayHosts: relayHosts,
		OnReflexive: func([]netip.AddrPort) { a.advertNow() },
		Logger:      a.cfg.Logger.With("component", "path"), Now: a.cfg.Now,
	})
	if err != nil {
		return err
	}
	a.paths.mgr = m
	return nil
}

// pathStatus fills in the path layer's view of a peer.
func (a *Agent) pathStatus(ps *PeerStatus, k certs.WireGuardKey) {
	if a.paths.mgr == nil {
		return
	}
	st, ok := a.paths.mgr.Peer(k)
	if !ok {
		return
	}
	ps.Path, ps.RTTMillis = string(st.Path), float64(st.RTT.Microseconds())/1000
	// WireGuard's endpoint is the final address; where it is the path
	// layer's route, show the route ("relay:<n>:<addr:port>" through one
	// of our allocations).
	if r, err := path.ParseRoute(st.Endpoint); err == nil && r.Addr.String() == ps.Endpoint {
		ps.Endpoint = st.Endpoint
	}
	if st.Relay.IsValid() {
		ps.Relay = st.Relay.String()
	}
}

// runPaths runs the path layer until ctx ends.
func (a *Agent) runPaths(ctx context.Context) { a.paths.mgr.Run(ctx) }

// advertNow makes the advertise loop look at the candidates now.
func (a *Agent) advertNow() {
	select {
	case a.advertKick <- struct{}{}:
	default:
	}
}

// pathCandidates are the agent's candidates: its local endpoints, then
// the server-reflexive addresses STUN found, and the relayed address of
// the relay allocation (which takes the last place if all are taken), at
// most endpoint.MaxCandidates.
func (a *Agent) pathCandidates() []endpoint.Candidate {
	out := a.localOnly()
	for _, ap := range a.paths.mgr.Reflexive() {
		c := endpoint.Candidate{Kind: endpoint.Reflexive, Addr: ap}
		if len(out) == endpoint.MaxCandidates {
			break
		}
		if c.Check() == nil && !slices.ContainsFunc(out, func(o endpoint.Candidate) bool { return o.Addr == ap }) {
			out = append(out, c)
		}
	}
	if ap, ok := a.relayCandidate(); ok {
		if c := (endpoint.Candidate{Kind: endpoint.Relay, Addr: ap}); c.Check() == nil {
			if len(out) == endpoint.MaxCandidates {
				out = out[:len(out)-1]
			}
			out = append(out, c)
		}
	}
	return out
}

// pathCandidatesOf converts a peer's verified candidates for the path layer.
func pathCandidatesOf(cs []endpoint.Candidate) []path.Candidate {
	out := make([]path.Candidate, 0, len(cs))
	for _, c := range cs {
		k := path.Local
		switch c.Kind {
		case endpoint.Reflexive:
			k = path.Reflexive
		case endpoint.Relay:
			k = path.RelayKind
		}
		out = append(out, path.Candidate{Kind: k, Addr: c.Addr})
	}
	return out
}
