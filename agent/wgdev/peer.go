package wgdev

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// Peer is the desired configuration of one WireGuard peer.
type Peer struct {
	// PublicKey identifies the peer; required.
	PublicKey certs.WireGuardKey
	// AllowedIPs are the overlay prefixes the peer may send from and that
	// are routed to it. They replace any previously configured ones.
	AllowedIPs []netip.Prefix
	// Endpoint is the peer's UDP address. The zero value means "not
	// known": the peer then has to contact us first, and an endpoint
	// configured or learned earlier is left unchanged.
	Endpoint netip.AddrPort
	// PersistentKeepalive is the keepalive interval (0 disables it). It is
	// rounded up to whole seconds; at most 65535s.
	PersistentKeepalive time.Duration
}

// validate checks p and returns the keepalive interval in the
// whole seconds the UAPI wants.
func (p Peer) validate() (keepaliveSecs int, err error) {
	if p.PublicKey.IsZero() {
		return 0, errors.New("peer public key is not set")
	}
	for _, a := range p.AllowedIPs {
		if !a.IsValid() {
			return 0, fmt.Errorf("peer %v: invalid allowed IP %v", p.PublicKey, a)
		}
	}
	if p.Endpoint.IsValid() && p.Endpoint.Port() == 0 {
		return 0, fmt.Errorf("peer %v: endpoint %v has no port", p.PublicKey, p.Endpoint)
	}
	if p.Endpoint.IsValid() && p.Endpoint.Addr().IsUnspecified() {
		return 0, fmt.Errorf("peer %v: endpoint %v is unspecified", p.PublicKey, p.Endpoint)
	}
	ka := p.PersistentKeepalive
	if ka < 0 || ka > math.MaxUint16*time.Second {
		return 0, fmt.Errorf("peer %v: persistent keepalive %v out of range", p.PublicKey, ka)
	}
	return int((ka + time.Second - 1) / time.Second), nil
}
