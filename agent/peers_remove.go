package agent

import (
	"fmt"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// forgetLocked drops a peer from the agent's records (not the device).
func (m *peerManager) forgetLocked(p *verifiedPeer) {
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
func (m *peerManager) removeLocked(label, why string) {
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
func (m *peerManager) dropUnlistedLocked(now time.Time) (changed bool) {
	for _, p := range m.peers {
		if !p.unlistedAt.IsZero() && !now.Before(p.unlistedAt.Add(m.unlistedGrace)) {
			changed = true
			m.dropLocked(p, p.unlistedWhy+" (not listed again within "+m.unlistedGrace.String()+")")
		}
	}
	return changed
}

// dropLocked forgets a verified peer and takes it out of the device.
func (m *peerManager) dropLocked(p *verifiedPeer, why string) {
	m.forgetLocked(p)
	if err := m.dev.RemovePeer(p.id.WireGuardKey); err != nil {
		m.log.Error("removing peer", "device", p.id.DeviceID, "err", err)
	}
	m.log.Info("peer removed", "device", p.id.DeviceID, "hostname", p.id.Hostname, "why", why)
}

// sweep removes peers whose certificate has expired.
func (m *peerManager) sweep() {
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
	m.reconcileLocked()
	m.rotateLocked()
	if stale := m.staleLocked(); stale != m.wasStale {
		m.wasStale = stale
		if stale {
			m.log.Warn("the CRL is stale: no newer one arrived in time (the CA or the coordinator is not delivering revocations)",
				"number", m.crl.Number, "next_update", m.crl.NextUpdate, "grace", m.staleGrace, "policy", m.stalePolicy)
		} else {
			m.log.Info("the CRL is current again", "number", m.crl.Number, "next_update", m.crl.NextUpdate)
		}
	}
}

// reconcileLocked removes from the device any peer the agent does not hold
// as verified: whatever went wrong before, the device ends up with
// exactly the verified peers.
func (m *peerManager) reconcileLocked() {
	stats, err := m.dev.Peers()
	if err != nil {
		m.log.Error("cannot list the WireGuard device's peers to remove unverified ones", "err", err)
		return
	}
	want := make(map[certs.WireGuardKey]bool, len(m.peers))
	for _, p := range m.peers {
		want[p.id.WireGuardKey] = true
	}
	for _, s := range stats {
		if !want[s.PublicKey] {
			m.log.Warn("removing a WireGuard peer that is not verified", "key", s.PublicKey)
			m.removeFromDevice(s.PublicKey, "removing an unverified peer")
		}
	}
}

// removeFromDevice takes a key out of the WireGuard device. A failure
// leaves a peer the agent does not trust configured: it is logged as an
// error, and the next sweep's reconcileLocked tries again.
func (m *peerManager) removeFromDevice(k certs.WireGuardKey, why string) {
	if err := m.dev.RemovePeer(k); err != nil {
		m.log.Error("WireGuard peer not removed: "+why, "key", k, "err", err)
	}
}
