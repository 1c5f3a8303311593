package e2e

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/certmesh/certmesh/ca"

	"github.com/certmesh/certmesh/tstest/netns"
)

// Placement is where a host sits on the lab's network, as a laptop might:
// the issue-14 NAT matrix is every pair of these.
type Placement string

// The placements.
const (
	// Public is a host on the public segment, the server's.
	Public Placement = "public"
	// EIMNAT is a host alone behind a router of its own with
	// endpoint-independent (port-preserving) mapping: a home router.
	EIMNAT Placement = "eim-nat"
	// SymmetricNAT is a host alone behind a router with random
	// per-flow ports: a carrier-grade NAT that defeats hole punching.
	SymmetricNAT Placement = "symmetric-nat"
	// UDPBlocked is a host behind an endpoint-independent router that
	// drops UDP from its LAN (TCP passes): a hotel or corporate network.
	UDPBlocked Placement = "udp-blocked"
)

// Placements are all of them, in the order the matrix reports them.
var Placements = []Placement{Public, EIMNAT, SymmetricNAT, UDPBlocked}

// Place adds host name at p: on the public segment, or behind a new router
// called name+"-gw" (each NATed host has a router, and a LAN, of its own).
func (m *Mesh) Place(ctx context.Context, name string, p Placement) (*netns.Host, error) {
	var o netns.RouterOptions
	switch p {
	case Public:
		return m.Net.AddHost(ctx, name)
	case EIMNAT:
		o.Mapping = netns.EndpointIndependent
	case SymmetricNAT:
		o.Mapping = netns.Symmetric
	case UDPBlocked:
		o.BlockUDP = true
	default:
		return nil, fmt.Errorf("e2e: place %s: unknown placement %q", name, p)
	}
	r, err := m.Net.AddRouter(ctx, name+"-gw", o)
	if err != nil {
		return nil, err
	}
	return r.AddHost(ctx, name)
}

// STUNArgs are the agent flags that make it ask the server's embedded STUN
// responder (the relay's default UDP port on the server's address) for its
// public address.
func (m *Mesh) STUNArgs() []string {
	return []string{"--stun", netip.AddrPortFrom(m.Server.Host.Addr, ca.DefaultRelayUDPPort).String()}
}
