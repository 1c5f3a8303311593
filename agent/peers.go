package agent

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/translog"
)

// dataPlane is what the peer manager needs of the WireGuard device.
type dataPlane interface {
	UpsertPeer(p wgdev.Peer) error
	RemovePeer(k certs.WireGuardKey) error
	Peers() ([]wgdev.PeerStats, error)
}

// Reasons the agent refuses a peer beyond those of certs.Verify.
const (
	ReasonSelf            certs.Reason = "self"             // our own bundle
	ReasonAddressConflict certs.Reason = "address-conflict" // address already held by another verified peer
	ReasonKeyConflict     certs.Reason = "key-conflict"     // WireGuard key already held by another verified peer
	ReasonReplayed        certs.Reason = "replayed"         // older than a certificate already seen for the device
	ReasonDataPlane       certs.Reason = "data-plane"       // the device refused the configuration
	// ReasonUserReplayed: a user certificate older than one already seen
	// on the device (the peer stays, without that user).
	ReasonUserReplayed certs.Reason = "user-replayed"
)

// KeepAlive is the persistent keepalive configured for every peer, so that
// NAT mappings stay open and handshakes stay fresh.
const KeepAlive = 25 * time.Second

// verifiedPeer is a peer whose certificate verified and that is configured
// in the WireGuard device.
type verifiedPeer struct {
	label     string
	id        certs.Identity
	endpoints []netip.AddrPort
	machine   *x509.Certificate // for CRL checks
	user      *x509.Certificate // nil without a user certificate
}

// Rejection records why the coordinator's view of a peer was refused.
type Rejection struct {
	Label  string       `json:"label"`
	Reason certs.Reason `json:"reason"`
	Error  string       `json:"error"`
	At     time.Time    `json:"at"`
}

// peerManager turns the coordinator's untrusted events into WireGuard
// peers. Only a bundle that passes certs.Verify and the local consistency
// checks becomes a peer, with key and AllowedIPs from the certificate.
type peerManager struct {
	roots *certs.Roots
	dev   dataPlane
	log   *slog.Logger
	now   func() time.Time

	mu       sync.Mutex
	self     certs.Identity
	peers    map[certs.DeviceID]*verifiedPeer
	labels   map[string]certs.DeviceID
	newest   map[certs.DeviceID]time.Time // highest NotBefore seen per device
	newestU  map[certs.DeviceID]time.Time // highest user certificate NotBefore seen per device
	rejected map[string]Rejection

	// byAddr maps each verified peer's overlay addresses to its identity,
	// rebuilt on every change and read without locks by the packet filter.
	byAddr atomic.Pointer[map[netip.Addr]*certs.Identity]

	crl          *certs.CRL
	crlRefusal   string
	crlRefusedAt time.Time
	staleGrace   time.Duration
	stalePolicy  StalePolicy
	wasStale     bool
	// logged, if set, checks a certificate's inclusion in the CA's log.
	logged func(der []byte, b *translog.InclusionBundle) error

	onChange func() // called (under mu) after the verified identities changed
}

// lookup returns the verified identity holding overlay address a.
func (m *peerManager) lookup(a netip.Addr) (*certs.Identity, bool) {
	idx := m.byAddr.Load()
	if idx == nil {
		return nil, false
	}
	id, ok := (*idx)[a]
	return id, ok
}

// changedLocked rebuilds the address index and tells the filter.
func (m *peerManager) changedLocked() {
	idx := make(map[netip.Addr]*certs.Identity, 2*len(m.peers))
	for _, p := range m.peers {
		id := p.id // a copy the filter may keep
		for _, a := range id.Addresses {
			idx[a] = &id
		}
	}
	m.byAddr.Store(&idx)
	if m.onChange != nil {
		m.onChange()
	}
}

func newPeerManager(roots *certs.Roots, dev dataPlane, self certs.Identity, log *slog.Logger, now func() time.Time) *peerManager {
	return &peerManager{
		roots: roots, dev: dev, log: log, now: now, self: self,
		peers: map[certs.DeviceID]*verifiedPeer{}, labels: map[string]certs.DeviceID{},
		newest: map[certs.DeviceID]time.Time{}, newestU: map[certs.DeviceID]time.Time{}, rejected: map[string]Rejection{},
	}
}

// setSelf updates our own identity after renewal.
func (m *peerManager) setSelf(id certs.Identity) {
	m.mu.Lock()
	m.self = id
	m.mu.Unlock()
}

// apply handles one coordinator event.
func (m *peerManager) apply(e *wire.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.changedLocked()
	switch e.Type {
	case wire.EventSnapshot:
		keep := map[string]bool{}
		for _, p := range e.Peers {
			keep[p.Label] = true
		}
		for label := range m.labels {
			if !keep[label] {
				m.removeLocked(label, "not in snapshot")
			}
		}
		for label := range m.rejected {
			if !keep[label] {
				delete(m.rejected, label)
			}
		}
		for i := range e.Peers {
			m.upsertLocked(&e.Peers[i])
		}
	case wire.EventUpsert:
		m.upsertLocked(e.Peer)
	case wire.EventRemove:
		m.removeLocked(e.Label, "left")
		delete(m.rejected, e.Label)
	}
}

func (m *peerManager) reject(label string, err error) {
	r := Rejection{Label: label, Reason: certs.ReasonOf(err), Error: err.Error(), At: m.now()}
	if r.Reason == "" {
		r.Reason = certs.ReasonMalformed
	}
	m.rejected[label] = r
	m.log.Warn("peer refused", "label", label, "reason", r.Reason, "err", err)
}

func refusal(r certs.Reason, format string, args ...any) error {
	return &certs.RejectError{Reason: r, Err: fmt.Errorf(format, args...)}
}

// upsertLocked verifies p and, if it passes, configures it. A refused
// update leaves an already configured peer as it was.
func (m *peerManager) upsertLocked(p *wire.Peer) {
	b, err := certs.ParseBundle(p.Bundle)
	if err != nil {
		m.reject(p.Label, err)
		return
	}
	id, err := certs.Verify(b, m.roots, m.crl, m.now())
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
	if m.peers[id.DeviceID] == nil && m.staleLocked() && m.stalePolicy == StaleRefuseNew {
		m.reject(p.Label, refusal(ReasonCRLStale, "the CRL is stale (next update was %s): accepting no new peers", m.crl.NextUpdate.UTC().Format(time.RFC3339)))
		return
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
	wp := peerConfig(id, p.Endpoints)
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
			_ = m.dev.RemovePeer(id.WireGuardKey)
		}
		if old != nil {
			if rerr := m.dev.UpsertPeer(peerConfig(old.id, old.endpoints)); rerr != nil {
				_ = m.dev.RemovePeer(old.id.WireGuardKey)
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
	if old != nil && old.label != p.Label {
		delete(m.labels, old.label)
	}
	m.peers[id.DeviceID] = &verifiedPeer{label: p.Label, id: id, endpoints: slices.Clone(p.Endpoints), machine: b.Machine, user: b.User}
	m.labels[p.Label] = id.DeviceID
	if id.NotBefore.After(m.newest[id.DeviceID]) {
		m.newest[id.DeviceID] = id.NotBefore
	}
	if id.User != nil && id.User.NotBefore.After(m.newestU[id.DeviceID]) {
		m.newestU[id.DeviceID] = id.User.NotBefore
	}
	delete(m.rejected, p.Label)
	if delayKeepalive {
		m.enableKeepaliveLater(id.DeviceID, id.WireGuardKey)
	}
	if old == nil || old.id.Serial != id.Serial {
		m.log.Info("peer verified and configured", "device", id.DeviceID, "hostname", id.Hostname,
			"addresses", id.Addresses, "not_after", id.NotAfter)
	}
}

// peerConfig is the WireGuard configuration of a verified peer: key and
// AllowedIPs from its certificate, the first usable endpoint the
// coordinator offered (none if none is usable: the peer can still reach us).
func peerConfig(id certs.Identity, eps []netip.AddrPort) wgdev.Peer {
	wp := wgdev.Peer{PublicKey: id.WireGuardKey, AllowedIPs: id.AllowedIPs(), PersistentKeepalive: KeepAlive}
	for _, ep := range eps {
		a := ep.Addr()
		if ep.IsValid() && ep.Port() != 0 && !a.IsUnspecified() && !a.IsMulticast() {
			wp.Endpoint = ep
			break
		}
	}
	return wp
}

// staleLocked reports whether the CRL held is past its next update by more
// than the grace period. (Before the first CRL arrives nothing is stale: a
// coordinator that withholds every CRL gains what withholding a new one
// gains, until the certificates expire.)
func (m *peerManager) staleLocked() bool {
	return m.crl != nil && m.now().After(m.crl.NextUpdate.Add(m.staleGrace))
}

func (m *peerManager) currentCRL() *certs.CRL {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.crl
}

func (m *peerManager) crlRefused(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.crlRefusal, m.crlRefusedAt = err.Error(), m.now()
}

// setCRL installs a newer CRL: revoked peers leave the device now, revoked
// users are dropped from their machines.
func (m *peerManager) setCRL(crl *certs.CRL) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.crl = crl
	for devID, p := range m.peers {
		if err := crl.CheckMachine(p.machine, p.id); err != nil {
			m.log.Warn("peer revoked", "device", devID, "hostname", p.id.Hostname, "serial", p.id.Serial)
			m.dropLocked(p, "revoked")
			m.reject(p.label, err)
			continue
		}
		if p.id.User != nil {
			if err := crl.CheckUser(p.user, p.id.User); err != nil {
				p.id.UserRejected, p.id.User = err, nil
			}
		}
	}
	m.changedLocked()
}

func (m *peerManager) crlStatus() CRLStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := CRLStatus{StalePolicy: m.stalePolicy, Refused: m.crlRefusal, RefusedAt: m.crlRefusedAt}
	if m.crl != nil {
		st.Number, st.ThisUpdate, st.NextUpdate, st.Entries = m.crl.Number.String(), m.crl.ThisUpdate, m.crl.NextUpdate, m.crl.Len()
		st.Stale = m.staleLocked()
	}
	return st
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

// forgetLocked drops a peer from the agent's records (not the device).
func (m *peerManager) forgetLocked(p *verifiedPeer) {
	delete(m.peers, p.id.DeviceID)
	if m.labels[p.label] == p.id.DeviceID {
		delete(m.labels, p.label)
	}
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

// removeLocked drops the peer the coordinator knows as label.
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
	m.dropLocked(p, why)
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
	m.reconcileLocked()
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
		return
	}
	want := make(map[certs.WireGuardKey]bool, len(m.peers))
	for _, p := range m.peers {
		want[p.id.WireGuardKey] = true
	}
	for _, s := range stats {
		if !want[s.PublicKey] {
			m.log.Warn("removing a WireGuard peer that is not verified", "key", s.PublicKey)
			_ = m.dev.RemovePeer(s.PublicKey)
		}
	}
}

// snapshot copies the verified peers and the rejections, for status.
func (m *peerManager) snapshot() ([]verifiedPeer, []Rejection) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := make([]verifiedPeer, 0, len(m.peers))
	for _, p := range m.peers {
		ps = append(ps, *p)
	}
	rs := make([]Rejection, 0, len(m.rejected))
	for _, r := range m.rejected {
		rs = append(rs, r)
	}
	slices.SortFunc(ps, func(a, b verifiedPeer) int { return strings.Compare(string(a.id.Hostname), string(b.id.Hostname)) })
	slices.SortFunc(rs, func(a, b Rejection) int { return strings.Compare(a.Label, b.Label) })
	return ps, rs
}
