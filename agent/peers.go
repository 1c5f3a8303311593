package agent

import (
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
	Kick(k certs.WireGuardKey) error // start handshaking now
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
	hints     []netip.AddrPort  // the hints the endpoint policy allowed, as relayed
	endpoints []netip.AddrPort  // the same, the one in use first (peers_rotate.go)
	epSince   time.Time         // when endpoints[0] was put in use
	machine   *x509.Certificate // for CRL checks
	user      *x509.Certificate // nil without a user certificate
	// unlistedAt is when the coordinator stopped listing the peer (zero
	// while it lists it); unlistedWhy says how (peers_remove.go).
	unlistedAt  time.Time
	unlistedWhy string
}

// Rejection records why the coordinator's view of a peer was refused.
type Rejection struct {
	Label  string       `json:"label"`
	Reason certs.Reason `json:"reason"`
	Error  string       `json:"error"`
	At     time.Time    `json:"at"`
	seq    uint64       // order of the refusals, for keeping the most recent
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
	rejected rejections
	maxPeers int // wire.MaxPeers; tests lower it
	// endpoints decides which of a peer's endpoint hints may be used.
	endpoints endpointPolicy

	// byAddr maps each verified peer's overlay addresses to its identity,
	// rebuilt on every change and read without locks by the packet filter.
	byAddr atomic.Pointer[map[netip.Addr]*certs.Identity]

	crl          *certs.CRL
	crlRefusal   string
	crlRefusedAt time.Time
	staleGrace   time.Duration
	skew         time.Duration // NotBefore tolerance of certs.VerifyWith (Config.MaxClockSkew)
	// unlistedGrace: how long a peer the coordinator stopped listing is
	// kept (0 or negative: removed at once).
	unlistedGrace time.Duration
	stalePolicy   DegradedPolicy
	wasStale      bool
	// logged, if set, checks a certificate's inclusion in the CA's log.
	logged func(der []byte, b *translog.InclusionBundle) error
	// logAlarm, if set, returns the transparency-log alarm ("" if none);
	// alarmPolicy says whether new peers are accepted while there is one.
	logAlarm func() string
	// policyStale, if set, says why the policy is past its valid-until
	// ("" if it is not); with policyStalePolicy refuse-new no new peer is
	// accepted meanwhile.
	policyStale       func() string
	policyStalePolicy DegradedPolicy
	alarmPolicy       DegradedPolicy

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
		newest: map[certs.DeviceID]time.Time{}, newestU: map[certs.DeviceID]time.Time{}, rejected: newRejections(), maxPeers: wire.MaxPeers,
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
		m.keepRejections(keep)
		for i := range e.Peers {
			m.upsertLocked(&e.Peers[i])
		}
	case wire.EventUpsert:
		m.upsertLocked(e.Peer)
	case wire.EventRemove:
		m.removeLocked(e.Label, "left")
		m.forgetRejection(e.Label)
	}
}

func refusal(r certs.Reason, format string, args ...any) error {
	return &certs.RejectError{Reason: r, Err: fmt.Errorf(format, args...)}
}

// snapshot copies the verified peers and the rejections, for status.
func (m *peerManager) snapshot() ([]verifiedPeer, []Rejection, map[certs.Reason]uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := make([]verifiedPeer, 0, len(m.peers))
	for _, p := range m.peers {
		ps = append(ps, *p)
	}
	slices.SortFunc(ps, func(a, b verifiedPeer) int { return strings.Compare(string(a.id.Hostname), string(b.id.Hostname)) })
	rs, counts := m.rejectionsLocked()
	return ps, rs, counts
}
