package agent

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/policy"
)

// ReasonRouteNotAllowed: a route the peer's certificate carries and it
// serves, refused because the policy lets this node reach nothing inside
// it through that peer (policy.Node.MayRoute).
const ReasonRouteNotAllowed certs.Reason = "route-not-allowed"

// wantedRoutes are the routes a router is certified for, serves and this
// node asks for (--accept-routes, --exit-node), whatever the policy says.
type wantedRoutes struct {
	id     certs.Identity
	label  string
	routes []netip.Prefix
}

// want records the routes p is wanted for (none: forgotten).
func (s *routeStage) want(p *verifiedPeer, routes []netip.Prefix) {
	if len(routes) == 0 {
		delete(s.wanted, p.id.DeviceID)
		return
	}
	s.wanted[p.id.DeviceID] = wantedRoutes{id: p.id, label: p.label, routes: routes}
}

// permitted keeps the routes the policy lets this node reach through
// router; each other one is refused and counted (route-not-allowed), and
// goes into neither WireGuard nor the host's routes.
func (s *routeStage) permitted(router certs.Identity, label string, routes []netip.Prefix) []netip.Prefix {
	if s.permit == nil {
		return routes
	}
	var out []netip.Prefix
	for _, r := range routes {
		if s.permit(router, r) {
			out = append(out, r)
			continue
		}
		s.refused.add(s.log, label, router.DeviceID, ReasonRouteNotAllowed,
			fmt.Sprintf("the policy lets this node reach nothing inside %s through device %s", r, router.DeviceID), s.now())
	}
	return out
}

// setPolicy decides routes by the policy n (nil: none held, so no route)
// from now on, and decides again those of every router known: a new
// policy installs and removes routes at once, without a new relay.
func (s *routeStage) setPolicy(n *policy.Node) {
	s.permit = n.MayRoute
	changed := false
	for dev, w := range s.wanted {
		routes := s.permitted(w.id, w.label, w.routes)
		r := s.pick.routers[dev]
		if (r == nil && len(routes) == 0) || (r != nil && slices.Equal(r.routes, routes)) {
			continue
		}
		s.pick.learn(w.id, w.label, routes, s.now())
		changed = true
	}
	if changed {
		s.apply()
	}
}
