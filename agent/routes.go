package agent

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// Reasons the route stage refuses a route the coordinator relayed for a
// peer (the peer itself stays admitted).
const (
	// ReasonRouteUncertified: the peer's verified certificate does not
	// carry the route.
	ReasonRouteUncertified certs.Reason = "route-uncertified"
	// ReasonRouteMalformed: not a canonical CIDR prefix.
	ReasonRouteMalformed certs.Reason = "route-malformed"
)

// kernelRoutes puts routed prefixes into the tunnel on the host
// (wgdev.Device in KernelTUN mode); nil in userspace mode, where the
// netstack sends everything into WireGuard and AllowedIPs alone route.
type kernelRoutes interface {
	AddRoute(p netip.Prefix) error
	DelRoute(p netip.Prefix) error
}

// routeStage sits between the peer set and the path stage: it learns the
// routes each admitted peer is certified for and says it serves, chooses
// one router per prefix (routes_primary.go) and has the device stage put
// each prefix into its router's AllowedIPs only, and the host route it
// into the tunnel. A route the coordinator relays that the certificate
// lacks is refused and counted. It implements peerSink; its methods run
// under the peer set's lock.
type routeStage struct {
	next   peerSink
	dev    *deviceStage
	kernel kernelRoutes // nil: none (userspace)
	// accept: install peers' routes at all (--accept-routes); exit: the
	// exit node asked for, whose default routes are used (exitnode.go).
	accept bool
	exit   string
	// alive says whether a path to the peer works now (the path layer's
	// probes; nil: every router counts as alive).
	alive func(certs.WireGuardKey) bool
	// permit says whether the policy lets this node reach prefix p
	// through router (nil: it does; the agent sets it from the policy
	// held: routes_policy.go).
	permit func(router certs.Identity, p netip.Prefix) bool
	// wanted are, per router, the routes certified, relayed and asked for
	// (before the policy's say), for deciding again on a new policy.
	wanted map[certs.DeviceID]wantedRoutes
	log    *slog.Logger
	now    func() time.Time
	pick   primaries
	// installed are the prefixes routed into the tunnel on the host.
	installed map[netip.Prefix]bool
	refused   routeRefusals
}

// router is one admitted peer certified for and serving routes.
type router struct {
	id     certs.Identity
	label  string
	routes []netip.Prefix // certified, claimed and permitted
	up     bool           // a path works
	wasUp  bool           // a path has worked since it was admitted
	since  time.Time      // when up last changed
}

func newRouteStage(next peerSink, dev *deviceStage, kernel kernelRoutes, accept bool, log *slog.Logger, now func() time.Time) *routeStage {
	return &routeStage{next: next, dev: dev, kernel: kernel, accept: accept, log: log, now: now,
		pick: newPrimaries(), wanted: map[certs.DeviceID]wantedRoutes{}, installed: map[netip.Prefix]bool{}, refused: newRouteRefusals()}
}

func (s *routeStage) admit(p, prev *verifiedPeer) (bool, error) {
	lost, err := s.next.admit(p, prev)
	if err != nil {
		if lost {
			delete(s.wanted, p.id.DeviceID)
			s.pick.forget(p.id.DeviceID)
			s.apply()
		}
		return lost, err
	}
	wanted := s.routesOf(p)
	s.want(p, wanted)
	if len(wanted) == 0 && s.pick.routers[p.id.DeviceID] == nil {
		return false, nil
	}
	routes := s.permitted(p.id, p.label, wanted)
	s.pick.learn(p.id, p.label, routes, s.now())
	s.apply()
	return false, nil
}

func (s *routeStage) evict(p *verifiedPeer, why string) {
	delete(s.wanted, p.id.DeviceID)
	if s.pick.forget(p.id.DeviceID) {
		s.log.Info("router removed: its routes move to another router or go", "device", p.id.DeviceID, "why", why)
		s.apply() // before the peer goes: a standby takes the prefixes over
	}
	s.next.evict(p, why)
}

func (s *routeStage) sweep(peers []*verifiedPeer) {
	s.next.sweep(peers)
	if len(s.pick.routers) == 0 {
		return
	}
	now := s.now()
	for _, r := range s.pick.routers {
		up := s.alive == nil || s.alive(r.id.WireGuardKey)
		if up != r.up {
			r.up, r.since = up, now
			r.wasUp = r.wasUp || up
		}
	}
	s.apply()
}

// routesOf checks the routes the coordinator relayed for p against its
// certificate: the certified ones are kept (if it accepts routes at all;
// the policy has its say in permitted), the rest are refused and counted.
// Exit routes are left to the exit-node choice.
func (s *routeStage) routesOf(p *verifiedPeer) []netip.Prefix {
	var out []netip.Prefix
	for _, c := range p.claimed {
		r, err := certs.ParseRoute(c)
		if err != nil {
			s.refused.add(s.log, p.label, p.id.DeviceID, ReasonRouteMalformed, err.Error(), s.now())
			continue
		}
		if !p.id.HasRoute(r) {
			s.refused.add(s.log, p.label, p.id.DeviceID, ReasonRouteUncertified,
				fmt.Sprintf("route %s relayed for device %s is not in its certificate %s", r, p.id.DeviceID, p.id.Serial), s.now())
			continue
		}
		if certs.IsExitRoute(r) {
			if !exitWanted(s.exit, p.id) || slices.Contains(out, r) {
				continue
			}
		} else if !s.accept || slices.Contains(out, r) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// apply chooses the primaries again and brings the device's AllowedIPs
// and the host's routes in line. Each router whose prefixes changed is
// set to exactly its new ones; in WireGuard a prefix belongs to the peer
// that took it last, so the order does not matter.
func (s *routeStage) apply() {
	want := s.pick.choose(s.now(), s.log)
	held := s.dev.routed()
	for dev, old := range held {
		if nw := want[dev]; !sameSet(old, nw) {
			s.setRoutes(dev, nw)
		}
	}
	for dev, nw := range want {
		if _, had := held[dev]; !had {
			s.setRoutes(dev, nw)
		}
	}
	s.syncKernel(want)
}

func (s *routeStage) setRoutes(dev certs.DeviceID, routes []netip.Prefix) {
	if err := s.dev.setRoutes(dev, routes); err != nil {
		s.log.Error("setting a router's routes in WireGuard", "device", dev, "routes", routes, "err", err)
	}
}

// syncKernel routes into the tunnel exactly the prefixes some router holds.
func (s *routeStage) syncKernel(want map[certs.DeviceID][]netip.Prefix) {
	if s.kernel == nil {
		return
	}
	keep := map[netip.Prefix]bool{}
	if s.exit != "" { // the default routes stay whatever the exit node does
		for _, r := range exitRoutes {
			keep[r] = true
		}
	}
	for _, rs := range want {
		for _, r := range rs {
			keep[r] = true
		}
	}
	for r := range s.installed {
		if !keep[r] {
			if err := s.kernel.DelRoute(r); err != nil {
				s.log.Error("removing a route from the tunnel", "route", r, "err", err)
				continue
			}
			delete(s.installed, r)
		}
	}
	for r := range keep {
		if !s.installed[r] {
			if err := s.kernel.AddRoute(r); err != nil {
				s.log.Error("routing a prefix into the tunnel", "route", r, "err", err)
				continue
			}
			s.installed[r] = true
		}
	}
}

// routed is the routed prefixes each device's peer holds.
func (d *deviceStage) routed() map[certs.DeviceID][]netip.Prefix {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[certs.DeviceID][]netip.Prefix, len(d.routes))
	for dev, rs := range d.routes {
		out[dev] = slices.Clone(rs)
	}
	return out
}
