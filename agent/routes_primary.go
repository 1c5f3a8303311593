package agent

import (
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// How one router is chosen among several certified for the same prefix.
// Every agent applies the same rule to what it sees:
//
//   - the router in use keeps the prefix while a path to it works;
//   - when its path stops working (the path layer's probes, some 7 s) or
//     it is evicted, the prefix goes at the next sweep to the router with
//     the lowest device ID whose path works;
//   - a router with a lower device ID than the one in use takes the prefix
//     back only once its path has worked for RouteHoldUp without a break
//     (hysteresis: a router that comes and goes does not drag the prefix
//     along), or at once while no path to the one in use has worked yet
//     (at start, whatever order the routers were learnt in);
//   - while no router's path works, the one in use keeps it, or the lowest
//     device ID if none is: so all agents start on the same one.
//
// A router admitted less than routeStartGrace ago that no path has reached
// yet counts as working: probing takes a moment.
var (
	RouteHoldUp     = 10 * time.Second
	routeStartGrace = 5 * time.Second
)

// primaries are the routers and, per prefix, the one in use.
type primaries struct {
	routers map[certs.DeviceID]*router
	primary map[netip.Prefix]certs.DeviceID
}

func newPrimaries() primaries {
	return primaries{routers: map[certs.DeviceID]*router{}, primary: map[netip.Prefix]certs.DeviceID{}}
}

// learn records the routes id serves (none: it is no router any more).
func (p *primaries) learn(id certs.Identity, label string, routes []netip.Prefix, now time.Time) {
	if len(routes) == 0 {
		p.forget(id.DeviceID)
		return
	}
	r := p.routers[id.DeviceID]
	if r == nil {
		r = &router{since: now}
		p.routers[id.DeviceID] = r
	}
	r.id, r.label, r.routes = id, label, routes
}

// forget drops a router, reporting whether it was one.
func (p *primaries) forget(dev certs.DeviceID) bool {
	if _, ok := p.routers[dev]; !ok {
		return false
	}
	delete(p.routers, dev)
	return true
}

// choose picks the router of every prefix and returns the prefixes each
// router is to hold.
func (p *primaries) choose(now time.Time, log *slog.Logger) map[certs.DeviceID][]netip.Prefix {
	byPrefix := map[netip.Prefix][]*router{}
	for _, r := range p.routers {
		for _, pfx := range r.routes {
			byPrefix[pfx] = append(byPrefix[pfx], r)
		}
	}
	want := map[certs.DeviceID][]netip.Prefix{}
	next := make(map[netip.Prefix]certs.DeviceID, len(byPrefix))
	for pfx, rs := range byPrefix {
		slices.SortFunc(rs, func(a, b *router) int { return strings.Compare(string(a.id.DeviceID), string(b.id.DeviceID)) })
		cur := p.routers[p.primary[pfx]]
		if cur != nil && !slices.Contains(cur.routes, pfx) {
			cur = nil
		}
		r := pickRouter(cur, rs, now)
		next[pfx] = r.id.DeviceID
		want[r.id.DeviceID] = append(want[r.id.DeviceID], pfx)
		if prev, ok := p.primary[pfx]; ok && prev != r.id.DeviceID && log != nil {
			log.Info("route moves to another router", "route", pfx, "from", prev, "to", r.id.DeviceID, "hostname", r.id.Hostname)
		}
	}
	for _, rs := range want {
		slices.SortFunc(rs, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	}
	p.primary = next
	return want
}

// pickRouter is the rule above, for one prefix: cur is the router in use
// (nil if none), rs the routers certified for it by device ID.
func pickRouter(cur *router, rs []*router, now time.Time) *router {
	working := func(r *router) bool {
		return r.up || (!r.wasUp && now.Sub(r.since) < routeStartGrace)
	}
	if cur != nil && working(cur) {
		for _, r := range rs {
			if r == cur {
				return cur
			}
			if (r.up && now.Sub(r.since) >= RouteHoldUp) || (!cur.wasUp && working(r)) {
				return r
			}
		}
	}
	for _, r := range rs {
		if r.up {
			return r
		}
	}
	if cur != nil {
		return cur
	}
	return rs[0]
}
