package agent

import (
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/certmesh/certmesh/agent/path"
	"github.com/certmesh/certmesh/certs"
)

// A peer's endpoint hints are tried in turn: while no handshake with the
// peer is fresh, the agent moves it to its next allowed hint every
// EndpointRotateAfter (some four of WireGuard's 5 s handshake retries), so
// that a hint that leads nowhere — a stale address, or one a coordinator
// put first — does not keep the peer unreachable. What each destination
// receives meanwhile is bounded by the device's handshake limit.
const (
	// EndpointRotateAfter is how long a peer stays on an endpoint that
	// brings no handshake.
	EndpointRotateAfter = 20 * time.Second
	// handshakeFresh: WireGuard drops a session this old (RejectAfterTime).
	handshakeFresh = 180 * time.Second
)

// pathStage is the stage between the peer set and the device: it decides
// which endpoint WireGuard uses for each admitted peer. Of the hints the
// coordinator relayed it keeps those the endpoint policy allows, in order,
// and moves a peer that brings no handshake to its next one (sweep). It
// implements peerSink; its methods run under the peer set's lock.
type pathStage struct {
	policy endpointPolicy
	dev    *deviceStage // next
	log    *slog.Logger
	now    func() time.Time
	paths  map[certs.DeviceID]*peerPath
	// mgr, if set, is the path layer (agent/path): it probes the peer's
	// verified candidates and sets the endpoint itself, so this stage
	// neither picks one nor rotates.
	mgr *path.Manager
}

// peerPath is where one peer is reached.
type peerPath struct {
	hints     []netip.AddrPort // the hints the endpoint policy allowed, as relayed
	endpoints []netip.AddrPort // the same, the one in use first
	since     time.Time        // when endpoints[0] was put in use
}

func newPathStage(policy endpointPolicy, dev *deviceStage, log *slog.Logger, now func() time.Time) *pathStage {
	return &pathStage{policy: policy, dev: dev, log: log, now: now, paths: map[certs.DeviceID]*peerPath{}}
}

func (s *pathStage) admit(p, prev *verifiedPeer) (bool, error) {
	hints, refused := s.policy.usable(p.hints)
	if len(refused) > 0 {
		s.log.Debug("endpoint hints refused", "device", p.id.DeviceID, "refused_endpoints", refused)
	}
	path := &peerPath{hints: hints, endpoints: hints, since: s.now()}
	old := s.paths[p.id.DeviceID]
	if prev != nil && old != nil && slices.Equal(old.hints, hints) {
		path.endpoints, path.since = old.endpoints, old.since // the same hints again: stay on the one in use
	}
	ep := first(path.endpoints)
	if s.probed(p, prev) {
		ep = netip.AddrPort{} // the path layer's endpoint stays
	}
	lost, err := s.dev.apply(p.id, ep)
	switch {
	case err == nil:
		s.paths[p.id.DeviceID] = path
	case lost:
		delete(s.paths, p.id.DeviceID)
	}
	return lost, err
}

func (s *pathStage) evict(p *verifiedPeer, why string) {
	if s.mgr != nil {
		s.mgr.RemovePeer(p.id.WireGuardKey)
	}
	delete(s.paths, p.id.DeviceID)
	s.dev.remove(p.id.DeviceID, why)
}

// sweep has the device drop what it should not hold, then moves each
// peer that has had no fresh handshake on its current endpoint for
// EndpointRotateAfter to its next hint.
func (s *pathStage) sweep(peers []*verifiedPeer) {
	s.dev.reconcile()
	now := s.now()
	var due []*verifiedPeer
	for _, p := range peers {
		if path := s.paths[p.id.DeviceID]; path != nil && len(path.endpoints) > 1 && now.Sub(path.since) >= EndpointRotateAfter &&
			!s.hasPath(p) { // the path layer keeps that one on a path that answers
			due = append(due, p)
		}
	}
	if len(due) == 0 {
		return
	}
	last, err := s.dev.lastHandshakes()
	if err != nil {
		return
	}
	for _, p := range due {
		path := s.paths[p.id.DeviceID]
		if hs := last[p.id.WireGuardKey]; !hs.IsZero() && now.Sub(hs) < handshakeFresh {
			path.since = now // the path works; look again later
			continue
		}
		next := append(slices.Clone(path.endpoints[1:]), path.endpoints[0])
		if err := s.dev.move(p.id, next[0]); err != nil {
			s.log.Warn("moving a peer to its next endpoint", "device", p.id.DeviceID, "err", err)
			continue
		}
		path.endpoints, path.since = next, now
		s.log.Debug("no handshake with the peer: trying its next endpoint", "device", p.id.DeviceID, "endpoint", next[0])
	}
}

// probed hands p's verified candidates to the path layer, which sets the
// endpoint once a path answers its probes, and reports whether it has one
// now: then the stage leaves the endpoint alone. Until it has, the stage
// works as without a path layer (first hint, rotation), so that a peer
// that does not answer probes is still reached.
func (s *pathStage) probed(p, prev *verifiedPeer) bool {
	if s.mgr == nil {
		return false
	}
	if prev != nil && prev.id.WireGuardKey != p.id.WireGuardKey {
		s.mgr.RemovePeer(prev.id.WireGuardKey)
	}
	if err := s.mgr.SetPeer(p.id.WireGuardKey, pathCandidatesOf(p.cands)); err != nil {
		s.log.Warn("handing the peer's candidates to the path layer", "device", p.id.DeviceID, "err", err)
	}
	return s.hasPath(p)
}

func (s *pathStage) hasPath(p *verifiedPeer) bool {
	if s.mgr == nil {
		return false
	}
	st, ok := s.mgr.Peer(p.id.WireGuardKey)
	return ok && st.Endpoint != ""
}

// first is the endpoint in use: the first allowed (none if none is: the
// peer can still reach us).
func first(eps []netip.AddrPort) netip.AddrPort {
	if len(eps) == 0 {
		return netip.AddrPort{}
	}
	return eps[0]
}
