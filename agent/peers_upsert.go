package agent

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
)

// upsertLocked verifies p and, if it passes, configures it. A refused
// update leaves an already configured peer as it was.
func (m *peerManager) upsertLocked(p *wire.Peer) {
	if err := p.Validate(); err != nil {
		m.reject(p.Label, &certs.RejectError{Reason: certs.ReasonMalformed, Err: err})
		return
	}
	b, err := certs.ParseBundle(p.Bundle)
	if err != nil {
		m.reject(p.Label, err)
		return
	}
	id, err := certs.VerifyWith(b, m.roots, m.crl, certs.VerifyOptions{Now: m.now(), NotBeforeSkew: m.skew})
	if err != nil {
		m.reject(p.Label, err)
		return
	}
	if err := m.checkConsistentLocked(id); err != nil {
		m.reject(p.Label, err)
		return
	}
	if m.logged != nil {
		if err := m.logged(b.Machine.Raw, p.Inclusion); err != nil {
			m.reject(p.Label, refusal(ReasonNotLogged, "machine certificate %s: %v", id.Serial, err))
			return
		}
		if id.User != nil {
			if err := m.logged(b.User.Raw, p.UserInclusion); err != nil {
				id.UserRejected = &certs.RejectError{Reason: ReasonUserNotLogged, Err: fmt.Errorf("user certificate %s: %w", id.User.Serial, err)}
				id.User = nil
			}
		}
	}
	if m.peers[id.DeviceID] == nil && len(m.peers) >= m.maxPeers {
		m.reject(p.Label, refusal(ReasonTooManyPeers, "already %d peers, at most %d allowed", len(m.peers), m.maxPeers))
		return
	}
	if m.peers[id.DeviceID] == nil && m.staleLocked() && m.stalePolicy == DegradedRefuseNew {
		m.reject(p.Label, refusal(ReasonCRLStale, "the CRL is stale (next update was %s): accepting no new peers", m.crl.NextUpdate.UTC().Format(time.RFC3339)))
		return
	}
	if m.peers[id.DeviceID] == nil && m.policyStalePolicy == DegradedRefuseNew && m.policyStale != nil {
		if why := m.policyStale(); why != "" {
			m.reject(p.Label, refusal(ReasonPolicyStale, "%s: accepting no new peers", why))
			return
		}
	}
	if m.peers[id.DeviceID] == nil && m.alarmPolicy == DegradedRefuseNew && m.logAlarm != nil {
		if alarm := m.logAlarm(); alarm != "" {
			m.reject(p.Label, refusal(ReasonLogAlarm, "the transparency log showed two histories (%s): accepting no new peers until the agent restarts", alarm))
			return
		}
	}
	if u := id.User; u != nil && u.NotBefore.Before(m.newestU[id.DeviceID]) {
		// A coordinator replaying an older user certificate (another
		// person, other groups) on the same machine certificate.
		id.User = nil
		id.UserRejected = &certs.RejectError{Reason: ReasonUserReplayed, Err: fmt.Errorf(
			"user certificate %s of %s is older than one already seen on device %s", u.Serial, u.Email, id.DeviceID)}
	}
	// The coordinator moved this label to another device: drop the old one.
	if prev, ok := m.labels[p.Label]; ok && prev != id.DeviceID {
		m.removeLocked(p.Label, "label reassigned")
	}
	old := m.peers[id.DeviceID]
	hints, refusedEps := m.endpoints.usable(p.Endpoints)
	// The same hints again: stay on the one in use (peers_rotate.go).
	eps, epSince := hints, m.now()
	if old != nil && slices.Equal(old.hints, hints) {
		eps, epSince = old.endpoints, old.epSince
	}
	wp := peerConfig(id, eps)
	// Two agents learn of each other at the same moment; if both started
	// a handshake at once (a keepalive is sent as soon as it is set),
	// wireguard-go can end up with crossed sessions and a direction that
	// stays silent until its 15 s retry. The agent with the lower key
	// starts; the other turns its keepalive on a little later.
	delayKeepalive := (old == nil || old.id.WireGuardKey != id.WireGuardKey) && !m.startsHandshake(id.WireGuardKey)
	if delayKeepalive {
		wp.PersistentKeepalive = 0
	}
	if err := m.dev.UpsertPeer(wp); err != nil {
		// wireguard-go may have applied part of the change: take the key
		// out of the device and put the previous configuration back, so
		// the device never holds a peer the agent does not track.
		if old == nil || old.id.WireGuardKey != id.WireGuardKey {
			m.removeFromDevice(id.WireGuardKey, "undoing a failed peer update")
		}
		if old != nil {
			if rerr := m.dev.UpsertPeer(peerConfig(old.id, old.endpoints)); rerr != nil {
				m.removeFromDevice(old.id.WireGuardKey, "undoing a failed peer update")
				m.forgetLocked(old)
			}
		}
		m.reject(p.Label, &certs.RejectError{Reason: ReasonDataPlane, Err: err})
		return
	}
	// Key rotation: the new key took over the addresses; drop the old one.
	if old != nil && old.id.WireGuardKey != id.WireGuardKey {
		if err := m.dev.RemovePeer(old.id.WireGuardKey); err != nil {
			m.log.Error("removing rotated WireGuard key", "device", id.DeviceID, "err", err)
		}
	}
	// Drop the old label only while it still names this device: in the
	// unlisted grace another device may have been listed under it since.
	if old != nil && old.label != p.Label && m.labels[old.label] == id.DeviceID {
		delete(m.labels, old.label)
	}
	m.peers[id.DeviceID] = &verifiedPeer{label: p.Label, id: id, hints: hints, endpoints: eps, epSince: epSince,
		machine: b.Machine, user: b.User}
	m.labels[p.Label] = id.DeviceID
	if id.NotBefore.After(m.newest[id.DeviceID]) {
		m.newest[id.DeviceID] = id.NotBefore
	}
	if id.User != nil && id.User.NotBefore.After(m.newestU[id.DeviceID]) {
		m.newestU[id.DeviceID] = id.User.NotBefore
	}
	m.forgetRejection(p.Label)
	if delayKeepalive {
		m.enableKeepaliveLater(id.DeviceID, id.WireGuardKey)
	}
	if old == nil || old.id.Serial != id.Serial {
		m.log.Info("peer verified and configured", "device", id.DeviceID, "hostname", id.Hostname,
			"addresses", id.Addresses, "not_after", id.NotAfter, "endpoint", wp.Endpoint, "refused_endpoints", refusedEps)
	}
}

// peerConfig is the WireGuard configuration of a verified peer: key and
// AllowedIPs from its certificate, the first of the endpoints the policy
// allowed (none if none is: the peer can still reach us).
func peerConfig(id certs.Identity, eps []netip.AddrPort) wgdev.Peer {
	wp := wgdev.Peer{PublicKey: id.WireGuardKey, AllowedIPs: id.AllowedIPs(), PersistentKeepalive: KeepAlive}
	if len(eps) > 0 {
		wp.Endpoint = eps[0]
	}
	return wp
}

// KeepaliveDelay is how long the agent with the higher WireGuard key
// waits before turning a new peer's keepalive on (see upsertLocked).
var KeepaliveDelay = 2 * time.Second

// startsHandshake reports whether we start the handshake with peer key k:
// the lower key does.
func (m *peerManager) startsHandshake(k certs.WireGuardKey) bool {
	return bytes.Compare(m.self.WireGuardKey[:], k[:]) < 0
}

// enableKeepaliveLater turns the keepalive of a peer on after
// KeepaliveDelay, if it is still configured with that key.
func (m *peerManager) enableKeepaliveLater(dev certs.DeviceID, k certs.WireGuardKey) {
	time.AfterFunc(KeepaliveDelay, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		p := m.peers[dev]
		if p == nil || p.id.WireGuardKey != k {
			return
		}
		if err := m.dev.UpsertPeer(peerConfig(p.id, p.endpoints)); err != nil {
			m.log.Warn("turning on keepalive", "device", dev, "err", err)
		}
	})
}

// checkConsistentLocked refuses a verified identity that is us, that is
// older than one already seen for the same device (replay after rotation),
// or that claims an address or key another verified peer holds.
func (m *peerManager) checkConsistentLocked(id certs.Identity) error {
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
