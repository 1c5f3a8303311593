package agent

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/certmesh/certmesh/agent/path"
	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/policy"
)

// asks are the routes and services this agent asks to be certified for
// (--advertise-routes, --advertise-services), sent in every enrollment and
// renewal request: each replaces what the device asked before.
func (a *Agent) asks() wire.Asks {
	var w wire.Asks
	for _, r := range a.cfg.AdvertiseRoutes {
		w.Routes = append(w.Routes, r.String())
	}
	for _, s := range a.cfg.AdvertiseServices {
		w.Services = append(w.Services, s.String())
	}
	return w
}

// certifiedAsAsked reports whether id carries exactly the routes and
// services asked for: otherwise a renewal may bring a certificate closer
// to the asks (an admin approved them since, or they were withdrawn).
func (a *Agent) certifiedAsAsked(id certs.Identity) bool {
	return sameSet(id.Routes, a.cfg.AdvertiseRoutes) && sameSet(id.Services, a.cfg.AdvertiseServices)
}

func sameSet[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// The rate limit of renewals on the coordinator's reissue signal: at most
// one per reissueMinGap; each signal that brought no change to the routes
// and services certified doubles the gap, up to reissueMaxGap, so that a
// coordinator forging signals cannot make the agent renew in a loop (the
// CA's own limits apply besides).
const (
	reissueMinGap = 2 * time.Second
	reissueMaxGap = 10 * time.Minute
)

// reissueSignal is the coordinator's hint that the CA will issue this
// device a different certificate (wire.EventReissue). It never blocks.
func (a *Agent) reissueSignal() {
	select {
	case a.reissueKick <- struct{}{}:
	default:
	}
}

// reissueLoop renews on the coordinator's reissue signal, rate-limited,
// and once at start when the certificate does not carry what is asked.
func (a *Agent) reissueLoop(ctx context.Context) {
	if _, self := a.Bundle(); !a.certifiedAsAsked(self) {
		a.cfg.Logger.Info("the certificate does not carry the routes and services asked for: renewing",
			"routes", self.Routes, "asked", a.cfg.AdvertiseRoutes)
		a.reissueSignal()
	}
	gap := reissueMinGap
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.reissueKick:
		}
		if wait := time.Until(last.Add(gap)); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		select { // signals that came while waiting: one renewal for all
		case <-a.reissueKick:
		default:
		}
		_, before := a.Bundle()
		actx, cancel := context.WithTimeout(ctx, renewTimeout(before.NotBefore, before.NotAfter))
		err := a.renewOnce(actx)
		cancel()
		last = time.Now()
		_, after := a.Bundle()
		if err != nil || (sameSet(before.Routes, after.Routes) && sameSet(before.Services, after.Services)) {
			gap = min(gap*2, reissueMaxGap)
		} else {
			gap = reissueMinGap
		}
		if err != nil {
			a.cfg.Logger.Warn("renewal on the reissue signal failed (the renewal schedule retries)", "err", err)
		} else {
			a.cfg.Logger.Info("renewed on the reissue signal", "routes", after.Routes, "services", after.Services)
		}
	}
}

// servedRoutes are the routes this agent routes now: those both asked for
// and certified (and, on a router, with forwarding set up: routerReady).
func (a *Agent) servedRoutes(self certs.Identity) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range self.Routes {
		if slices.Contains(a.cfg.AdvertiseRoutes, r) {
			out = append(out, r)
		}
	}
	return out
}

// newRouteStage builds the route stage of the pipeline (routes.go) and
// the router side (router.go) for this agent's mode.
func (a *Agent) newRouteStage(next peerSink, device *deviceStage, log *slog.Logger) (*routeStage, error) {
	var kernel kernelRoutes
	if a.cfg.Mode == wgdev.KernelTUN {
		kernel = a.dev
	}
	s := newRouteStage(next, device, kernel, a.cfg.AcceptRoutes, log.With("component", "routes"), a.cfg.Now)
	s.permit = (*policy.Node)(nil).MayRoute // no policy held yet: no route (the policy holder's onNode)
	if mgr := a.paths.mgr; mgr != nil {
		s.alive = func(k certs.WireGuardKey) bool {
			st, ok := mgr.Peer(k)
			return ok && st.Path != path.PathNone
		}
	}
	a.router = &routerSide{iface: a.dev.InterfaceName(), snat: !a.cfg.NoSNATRoutes, log: a.cfg.Logger.With("component", "router")}
	return s, a.startExit(s) // fail closed: no exit node without its routes
}

// serveRoutes makes this node route what it is both asked for and
// certified for, and tells peers through its publication (republished by
// the caller, or at the next watch). Forwarding needs kernel TUN mode.
func (a *Agent) serveRoutes() {
	_, self := a.Bundle()
	served := a.servedRoutes(self)
	if len(served) > 0 && a.cfg.Mode != wgdev.KernelTUN {
		a.cfg.Logger.Warn("routes are certified but not served: forwarding needs kernel TUN mode", "routes", served)
		served = nil
	}
	if err := a.router.set(served); err != nil {
		a.cfg.Logger.Error("cannot forward the certified routes: not serving them", "routes", served, "err", err)
		served = nil
	}
	if a.filter != nil { // the packet filter admits routed traffic to these alone
		a.filter.SetServed(served)
		a.filter.Revalidate()
	}
	var ss []string
	for _, r := range served {
		ss = append(ss, r.String())
	}
	a.pub.setRoutes(ss)
}

// routesStatus is the routes part of status, with the route refusals
// merged into the peer refusals.
func (a *Agent) routesStatus(rejected []Rejection, counts map[certs.Reason]uint64) (RoutesStatus, []Rejection, map[certs.Reason]uint64) {
	var rs RoutesStatus
	var rrej []Rejection
	var rcounts map[certs.Reason]uint64
	a.peers.locked(func() { rs, rrej, rcounts = a.routes.status() })
	rs.Served, rs.Forwarding = a.router.status()
	all, n := mergeRejections(rejected, rrej, counts, rcounts)
	return rs, all, n
}
