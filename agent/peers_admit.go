package agent

import (
	"fmt"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// fits refuses a verified identity that is us, that is older than one
// already seen for the same device (replay after rotation), or that
// claims an address or key another verified peer holds.
func (tx peerTx) fits(id certs.Identity) error {
	m := tx.m
	if id.DeviceID == m.self.DeviceID {
		return refusal(ReasonSelf, "bundle is this device's own")
	}
	if id.WireGuardKey == m.self.WireGuardKey {
		return refusal(ReasonKeyConflict, "WireGuard key is this device's own")
	}
	if newest, ok := m.newest[id.DeviceID]; ok && id.NotBefore.Before(newest) {
		return refusal(ReasonReplayed, "certificate %s of device %s is older than one already seen (issued %s)",
			id.Serial, id.DeviceID, newest.UTC().Format(time.RFC3339))
	}
	for _, a := range id.Addresses {
		if m.self.HasAddress(a) {
			return refusal(ReasonAddressConflict, "address %s is this device's own", a)
		}
	}
	for devID, other := range m.peers {
		if devID == id.DeviceID {
			continue
		}
		for _, a := range id.Addresses {
			if other.id.HasAddress(a) {
				return refusal(ReasonAddressConflict, "address %s is already held by device %s", a, devID)
			}
		}
		if other.id.WireGuardKey == id.WireGuardKey {
			return refusal(ReasonKeyConflict, "WireGuard key is already held by device %s", devID)
		}
	}
	return nil
}

// admit takes p, verified (and checked with fits), into the set and hands
// it to the next stage. A device not held yet is refused when the set is
// full or when degraded is set (why the agent's trust is degraded and it
// accepts no new peers). A refused update leaves a peer already held as
// it was.
func (tx peerTx) admit(p *verifiedPeer, degraded error) {
	m, id := tx.m, p.id
	if m.peers[id.DeviceID] == nil && len(m.peers) >= m.maxPeers {
		m.reject(p.label, refusal(ReasonTooManyPeers, "already %d peers, at most %d allowed", len(m.peers), m.maxPeers))
		return
	}
	if m.peers[id.DeviceID] == nil && degraded != nil {
		m.reject(p.label, degraded)
		return
	}
	if u := id.User; u != nil && u.NotBefore.Before(m.newestU[id.DeviceID]) {
		// A coordinator replaying an older user certificate (another
		// person, other groups) on the same machine certificate.
		p.id.User = nil
		p.id.UserRejected = &certs.RejectError{Reason: ReasonUserReplayed, Err: fmt.Errorf(
			"user certificate %s of %s is older than one already seen on device %s", u.Serial, u.Email, id.DeviceID)}
	}
	// The coordinator moved this label to another device: drop the old one.
	if prev, ok := m.labels[p.label]; ok && prev != id.DeviceID {
		m.removeLocked(p.label, "label reassigned")
	}
	old := m.peers[id.DeviceID]
	if lost, err := m.next.admit(p, old); err != nil {
		if lost {
			m.forgetLocked(old)
		}
		m.reject(p.label, &certs.RejectError{Reason: ReasonDataPlane, Err: err})
		return
	}
	// Drop the old label only while it still names this device: in the
	// unlisted grace another device may have been listed under it since.
	if old != nil && old.label != p.label && m.labels[old.label] == id.DeviceID {
		delete(m.labels, old.label)
	}
	m.peers[id.DeviceID] = p
	m.labels[p.label] = id.DeviceID
	if id.NotBefore.After(m.newest[id.DeviceID]) {
		m.newest[id.DeviceID] = id.NotBefore
	}
	if p.id.User != nil && p.id.User.NotBefore.After(m.newestU[id.DeviceID]) {
		m.newestU[id.DeviceID] = p.id.User.NotBefore
	}
	m.forgetRejection(p.label)
	if old == nil || old.id.Serial != id.Serial {
		m.log.Info("peer verified and configured", "device", id.DeviceID, "hostname", id.Hostname,
			"addresses", id.Addresses, "not_after", id.NotAfter)
	}
}
