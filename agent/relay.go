package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/certmesh/certmesh/agent/relayc"
	"github.com/certmesh/certmesh/internal/wire"
)

// relayFirstFetch bounds the fetch of relay credentials at start (the
// relays' UDP ports are the default STUN servers); past it the client
// keeps asking in the background.
const relayFirstFetch = 10 * time.Second

// relayID is the path layer's number for the agent's one relay allocation.
const relayID = 1

// relayLink is the agent's TURN client (agent/relayc) on the CA's relays:
// credentials come from the CA over mTLS, the allocation is attached to
// the path layer's Bind, and its relayed address is a signed candidate.
type relayLink struct {
	client *relayc.Client // nil: no relay (turned off, or the CA offers none)

	mu    sync.Mutex
	first *relayc.Credentials // the answer fetched at start, handed to the client once
}

// fetchRelayCredentials asks the CA for relay credentials.
func (a *Agent) fetchRelayCredentials(ctx context.Context) (relayc.Credentials, error) {
	var resp wire.RelayCredentialsResponse
	if err := a.caAPI.call(ctx, http.MethodPost, wire.PathRelayCredentials, wire.RelayCredentialsRequest{}, &resp); err != nil {
		return relayc.Credentials{}, err
	}
	return relayc.FromWire(resp)
}

// noRelayOffered is a CA answer that means it runs no relay: the relay is
// disabled (404 from a current server) or the server predates relays.
func noRelayOffered(err error) bool {
	var se *ServerError
	return errors.As(err, &se) && (se.Status == http.StatusNotFound || se.Status == http.StatusNotImplemented)
}

// openRelay fetches relay credentials once and, if the CA offers a relay,
// builds the client and attaches it to the path layer's Bind. It returns
// the relays' UDP addresses, the default STUN servers. No relay offered
// is no error: the agent runs without, saying so once.
func (a *Agent) openRelay(ctx context.Context) ([]netip.AddrPort, error) {
	if a.cfg.NoRelay {
		return nil, nil
	}
	log := a.cfg.Logger.With("component", "relay")
	fctx, cancel := context.WithTimeout(ctx, relayFirstFetch)
	creds, err := a.fetchRelayCredentials(fctx)
	cancel()
	switch {
	case noRelayOffered(err):
		log.Info("the CA offers no relay: running without one (peers behind NATs that block each other cannot connect)", "err", err)
		return nil, nil
	case err != nil:
		log.Warn("fetching relay credentials at start (retrying in the background)", "err", err)
	default:
		a.relay.first = &creds
	}
	c, err := relayc.New(relayc.Config{
		Credentials: a.relayCredentials, TLS: relayc.TLSConfig(a.roots, a.cfg.Now),
		OnChange: func(netip.AddrPort) { a.advertNow() }, Now: a.cfg.Now, Log: log,
	})
	if err != nil {
		return nil, err
	}
	deliver, err := a.paths.bind.AttachRelay(relayID, c)
	if err != nil {
		return nil, err
	}
	c.SetReceive(deliver)
	a.relay.client = c
	return relaySTUN(ctx, creds), nil
}

// relayCredentials is the client's Credentials: the answer of the start
// once, then a fresh fetch.
func (a *Agent) relayCredentials(ctx context.Context) (relayc.Credentials, error) {
	a.relay.mu.Lock()
	first := a.relay.first
	a.relay.first = nil
	a.relay.mu.Unlock()
	if first != nil && first.Expires.After(a.cfg.Now()) {
		return *first, nil
	}
	return a.fetchRelayCredentials(ctx)
}

// relaySTUN is the UDP addresses of the relays in creds (each answers
// STUN Binding), resolved; one that does not resolve is left out.
func relaySTUN(ctx context.Context, creds relayc.Credentials) []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range creds.Servers {
		if s.UDP == "" {
			continue
		}
		if ap, err := netip.ParseAddrPort(s.UDP); err == nil {
			out = append(out, ap)
			continue
		}
		host, port, err := net.SplitHostPort(s.UDP)
		if err != nil {
			continue
		}
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		p, perr := net.LookupPort("udp", port)
		if err != nil || perr != nil || len(ips) == 0 {
			continue
		}
		out = append(out, netip.AddrPortFrom(ips[0].Unmap(), uint16(p)))
	}
	return out
}

// runRelay keeps the relay allocation until ctx ends.
func (a *Agent) runRelay(ctx context.Context) {
	if a.relay.client != nil {
		_ = a.relay.client.Run(ctx) // its error is ctx's
	}
}

// relayCheckNow makes the client check its relay at once (the machine's
// addresses changed).
func (a *Agent) relayCheckNow() {
	if a.relay.client != nil {
		a.relay.client.CheckNow()
	}
}

// relayCandidate is the relayed address as a candidate, if there is one.
func (a *Agent) relayCandidate() (netip.AddrPort, bool) {
	if a.relay.client == nil {
		return netip.AddrPort{}, false
	}
	ap := a.relay.client.RelayedAddr()
	return ap, ap.IsValid()
}

// relayStatus is the relay client's status (nil without a relay).
func (a *Agent) relayStatus() *relayc.Status {
	if a.relay.client == nil {
		return nil
	}
	st := a.relay.client.Status()
	return &st
}
