package agent

import (
	"fmt"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// forgetLocked drops a peer from the agent's records (not the device).
func (m *peerSet) forgetLocked(p *verifiedPeer) {
	delete(m.peers, p.id.DeviceID)
	if m.labels[p.label] == p.id.DeviceID {
		delete(m.labels, p.label)
	}
}

// DefaultUnlistedGrace is how long a verified peer the coordinator stopped
// listing is kept: long enough for every agent to reconnect to a
// coordinator that restarted (the watch backoff is capped at 30 s) and be
// listed again.
const DefaultUnlistedGrace = 3 * time.Minute

// removeLocked handles the coordinator's word that the peer it knows as
// label is gone ("left", or missing from a snapshot). That is no signed
// reason: a coordinator that restarted, or lost the peer's watch for a
// moment, has simply not heard from it again yet. So the peer, verified
// and still valid, is kept for unlistedGrace (the sweep removes it then,
// or when its certificate expires, whichever is first) unless the
// coordinator lists it again meanwhile. Revocation (CRL), expiry and
// policy do not wait.
func (m *peerSet) removeLocked(label, why string) {
	devID, ok := m.labels[label]
	if !ok {
		return
	}
	p := m.peers[devID]
	if p == nil {
		delete(m.labels, label)
		return
	}
	if m.unlistedGrace <= 0 {
		m.dropLocked(p, why)
		return
	}
	if !p.unlistedAt.IsZero() {
		return // already waiting
	}
	p.unlistedAt, p.unlistedWhy = m.now(), why
	until := p.unlistedAt.Add(m.unlistedGrace)
	if p.id.NotAfter.Before(until) {
		until = p.id.NotAfter
	}
	m.log.Info("peer no longer listed by the coordinator; kept until it is listed again or the grace ends",
		"device", p.id.DeviceID, "hostname", p.id.Hostname, "why", why, "until", until.UTC().Format(time.RFC3339))
}

// dropUnlistedLocked removes the peers whose grace ended without the
// coordinator listing them again.
func (m *peerSet) dropUnlistedLocked(now time.Time) (changed bool) {
	for _, p := range m.peers {
		if !p.unlistedAt.IsZero() && !now.Before(p.unlistedAt.Add(m.unlistedGrace)) {
			changed = true
			m.dropLocked(p, p.unlistedWhy+" (not listed again within "+m.unlistedGrace.String()+")")
		}
	}
	return changed
}

// dropLocked forgets a verified peer and has the next stage take it off.
func (m *peerSet) dropLocked(p *verifiedPeer, why string) {
	m.forgetLocked(p)
	m.next.evict(p, why)
	m.log.Info("peer removed", "device", p.id.DeviceID, "hostname", p.id.Hostname, "why", why)
}

// sweep removes peers whose certificate has expired and those unlisted
// past the grace, then runs the next stage's sweep over the peers held.
func (m *peerSet) sweep() {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	changed := false
	defer func() {
		if changed {
			m.changedLocked()
		}
	}()
	for devID, p := range m.peers {
		if u := p.id.User; u != nil && now.After(u.NotAfter) {
			changed = true
			// The person's certificate ended; the machine stays a peer.
			p.id.User = nil
			p.id.UserRejected = &certs.RejectError{Reason: certs.ReasonUserExpired,
				Err: fmt.Errorf("user certificate of %s expired at %s", u.Email, u.NotAfter.UTC().Format(time.RFC3339))}
			m.log.Info("peer's user certificate expired", "device", devID, "email", u.Email)
		}
		if now.After(p.id.NotAfter) {
			changed = true
			m.dropLocked(p, "certificate expired")
			m.reject(p.label, refusal(certs.ReasonExpired, "certificate of device %s expired at %s", devID, p.id.NotAfter.UTC().Format(time.RFC3339)))
		}
	}
	if m.dropUnlistedLocked(now) {
		changed = true
	}
	held := make([]*verifiedPeer, 0, len(m.peers))
	for _, p := range m.peers {
		held = append(held, p)
	}
	m.next.sweep(held)
}
