package agent

import (
	"cmp"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// RoutesStatus is what `certmesh status` shows of routes.
type RoutesStatus struct {
	// Accept: peers' routes are installed (--accept-routes).
	Accept bool `json:"accept"`
	// ExitNode is the exit node asked for (--exit-node); its default
	// routes are among Installed once a peer certified for them is it.
	ExitNode string `json:"exit_node,omitempty"`
	// Served are the routes this node routes for its peers (asked,
	// certified and forwarded); Forwarding says how the forwarding stands.
	Served     []netip.Prefix `json:"served,omitempty"`
	Forwarding string         `json:"forwarding,omitempty"`
	// Installed are the peers' routes in use, one router each.
	Installed []RouteStatus `json:"installed,omitempty"`
}

// RouteStatus is one prefix routed through a peer.
type RouteStatus struct {
	Prefix   netip.Prefix   `json:"prefix"`
	Via      certs.DeviceID `json:"via"`
	Hostname certs.Hostname `json:"hostname"`
	// Standby are the other routers certified for the prefix, by device ID.
	Standby []certs.DeviceID `json:"standby,omitempty"`
}

// routeRefusals remembers the most recent route refusals (MaxRejections,
// one per peer label and route) and counts them by reason.
type routeRefusals struct {
	byKey  map[string]Rejection
	counts map[certs.Reason]uint64
	seq    uint64
	logged map[string]bool // keys already logged as warnings (each once)
}

func newRouteRefusals() routeRefusals {
	return routeRefusals{byKey: map[string]Rejection{}, counts: map[certs.Reason]uint64{}, logged: map[string]bool{}}
}

func (rs *routeRefusals) add(log *slog.Logger, label string, dev certs.DeviceID, reason certs.Reason, msg string, now time.Time) {
	label = clipLabel(label)
	key := label + "\x00" + clip(msg, maxRejectionError)
	rs.seq++
	rs.counts[reason]++
	rs.byKey[key] = Rejection{Label: label, Reason: reason, Error: clip(msg, maxRejectionError), At: now, seq: rs.seq}
	if len(rs.byKey) > MaxRejections {
		var oldest string
		for k, r := range rs.byKey {
			if oldest == "" || r.seq < rs.byKey[oldest].seq {
				oldest = k
			}
		}
		delete(rs.byKey, oldest)
	}
	if !rs.logged[key] && len(rs.logged) < MaxRejections {
		rs.logged[key] = true
		log.Warn("route refused", "label", label, "device", dev, "reason", reason, "err", msg)
	}
}

// status reports the routes in use and the refusals, for Agent.Status
// (under the peer set's lock, which the route stage runs under).
func (s *routeStage) status() (RoutesStatus, []Rejection, map[certs.Reason]uint64) {
	st := RoutesStatus{Accept: s.accept, ExitNode: s.exit}
	for pfx, dev := range s.pick.primary {
		r := s.pick.routers[dev]
		if r == nil {
			continue
		}
		rs := RouteStatus{Prefix: pfx, Via: dev, Hostname: r.id.Hostname}
		for other, o := range s.pick.routers {
			if other != dev && slices.Contains(o.routes, pfx) {
				rs.Standby = append(rs.Standby, other)
			}
		}
		slices.Sort(rs.Standby)
		st.Installed = append(st.Installed, rs)
	}
	slices.SortFunc(st.Installed, func(a, b RouteStatus) int { return strings.Compare(a.Prefix.String(), b.Prefix.String()) })
	rej := make([]Rejection, 0, len(s.refused.byKey))
	for _, r := range s.refused.byKey {
		rej = append(rej, r)
	}
	counts := make(map[certs.Reason]uint64, len(s.refused.counts))
	for k, v := range s.refused.counts {
		counts[k] = v
	}
	return st, rej, counts
}

// mergeRejections adds the route refusals to the peer refusals: newest
// first, at most MaxRejections, counts summed.
func mergeRejections(peers, routes []Rejection, counts, routeCounts map[certs.Reason]uint64) ([]Rejection, map[certs.Reason]uint64) {
	all := append(slices.Clone(peers), routes...)
	slices.SortStableFunc(all, func(a, b Rejection) int { return cmp.Compare(b.At.UnixNano(), a.At.UnixNano()) })
	if len(all) > MaxRejections {
		all = all[:MaxRejections]
	}
	if len(routeCounts) > 0 && counts == nil {
		counts = map[certs.Reason]uint64{}
	}
	for k, v := range routeCounts {
		counts[k] += v
	}
	return all, counts
}

// locked runs f under the peer set's lock (the route stage's state).
func (m *peerSet) locked(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f()
}
