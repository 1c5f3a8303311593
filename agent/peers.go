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

	"github.com/certmesh/certmesh/agent/dns"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/endpoint"
	"github.com/certmesh/certmesh/internal/wire"
)

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

// verifiedPeer is a peer whose certificate verified and that the peer set
// admitted: what the stages after it configure.
type verifiedPeer struct {
	label string
	id    certs.Identity
	// hints are the endpoints the coordinator relayed, unchecked: the
	// path stage decides which of them WireGuard may use.
	hints []netip.AddrPort
	// cands are the same endpoints with their kinds, for the path layer.
	cands []endpoint.Candidate
	// claimed are the routes the coordinator relayed for the peer,
	// unchecked: the route stage uses those its certificate carries.
	claimed []string
	machine *x509.Certificate // for CRL checks
	user    *x509.Certificate // nil without a user certificate
	// unlistedAt is when the coordinator stopped listing the peer (zero
	// while it lists it); unlistedWhy says how (peers_remove.go).
	unlistedAt  time.Time
	unlistedWhy string
}

// peerSink is the stage after the peer set: it puts each admitted peer on
// the data plane and takes each evicted one off. Today that is the path
// stage (paths.go), which picks the endpoint and hands on to the device
// stage (device.go); a stage between the peer set and the device
// implements peerSink and hands on to the next one. Its methods are
// called with the peer set's lock held, in the order of its changes.
type peerSink interface {
	// admit configures p in place of prev (the same device's peer until
	// now, nil if it is new). An error means the data plane refused p:
	// prev is configured as before, or, if that failed too, gone as well
	// (lostPrev).
	admit(p, prev *verifiedPeer) (lostPrev bool, err error)
	// evict takes p off the data plane.
	evict(p *verifiedPeer, why string)
	// sweep is the periodic pass over the peers held.
	sweep(peers []*verifiedPeer)
}

// Rejection records why the coordinator's view of a peer was refused.
type Rejection struct {
	Label  string       `json:"label"`
	Reason certs.Reason `json:"reason"`
	Error  string       `json:"error"`
	At     time.Time    `json:"at"`
	seq    uint64       // order of the refusals, for keeping the most recent
}

// peerSet holds the verified peers: the verification stage admits into
// it (through a peerTx), the CRL revokes and the sweep expires out of it,
// and every change goes on to the next stage and to the address index
// the packet filter reads.
type peerSet struct {
	next    peerSink
	index   *addrIndex
	changed revalidator // nil: nothing to tell
	log     *slog.Logger
	now     func() time.Time

	mu       sync.Mutex
	self     certs.Identity
	peers    map[certs.DeviceID]*verifiedPeer
	labels   map[string]certs.DeviceID
	newest   map[certs.DeviceID]time.Time // highest NotBefore seen per device
	newestU  map[certs.DeviceID]time.Time // highest user certificate NotBefore seen per device
	rejected rejections
	maxPeers int // wire.MaxPeers; tests lower it
	// unlistedGrace: how long a peer the coordinator stopped listing is
	// kept (0 or negative: removed at once).
	unlistedGrace time.Duration
	// names is the resolver's table, fed from the set (names.go); nil: none.
	names *dns.Store
}

// revalidator is told when the verified identities changed (the packet
// filter, which drops flows of peers that left).
type revalidator interface{ Revalidate() int }

func newPeerSet(next peerSink, index *addrIndex, changed revalidator, self certs.Identity, unlistedGrace time.Duration,
	log *slog.Logger, now func() time.Time) *peerSet {
	return &peerSet{
		next: next, index: index, changed: changed, log: log, now: now, self: self, unlistedGrace: unlistedGrace,
		peers: map[certs.DeviceID]*verifiedPeer{}, labels: map[string]certs.DeviceID{},
		newest: map[certs.DeviceID]time.Time{}, newestU: map[certs.DeviceID]time.Time{}, rejected: newRejections(), maxPeers: wire.MaxPeers,
	}
}

// addrIndex maps each verified peer's overlay addresses to its identity:
// rebuilt by the peer set on every change, read without locks by the
// packet filter.
type addrIndex struct {
	m atomic.Pointer[map[netip.Addr]*certs.Identity]
}

// lookup returns the verified identity holding overlay address a.
func (x *addrIndex) lookup(a netip.Addr) (*certs.Identity, bool) {
	idx := x.m.Load()
	if idx == nil {
		return nil, false
	}
	id, ok := (*idx)[a]
	return id, ok
}

// changedLocked rebuilds the address index and tells the filter.
func (m *peerSet) changedLocked() {
	idx := make(map[netip.Addr]*certs.Identity, 2*len(m.peers))
	for _, p := range m.peers {
		id := p.id // a copy the filter may keep
		for _, a := range id.Addresses {
			idx[a] = &id
		}
	}
	m.index.m.Store(&idx)
	m.feedNamesLocked()
	if m.changed != nil {
		m.changed.Revalidate()
	}
}

// setSelf updates our own identity after renewal.
func (m *peerSet) setSelf(id certs.Identity) {
	m.mu.Lock()
	m.self = id
	m.feedNamesLocked()
	m.mu.Unlock()
}

// peerTx is one coordinator event's changes to the peer set, made under
// its lock; commit publishes them (address index, filter) and unlocks.
type peerTx struct{ m *peerSet }

func (m *peerSet) begin() peerTx {
	m.mu.Lock()
	return peerTx{m}
}

func (tx peerTx) commit() {
	tx.m.changedLocked()
	tx.m.mu.Unlock()
}

// relist starts a snapshot: the peers it does not list are unlisted
// (peers_remove.go), and the refusals of labels it does not list are
// forgotten.
func (tx peerTx) relist(listed map[string]bool) {
	m := tx.m
	for label := range m.labels {
		if !listed[label] {
			m.removeLocked(label, "not in snapshot")
		}
	}
	m.keepRejections(listed)
}

// left handles the coordinator's word that label left.
func (tx peerTx) left(label string) {
	tx.m.removeLocked(label, "left")
	tx.m.forgetRejection(label)
}

func (tx peerTx) reject(label string, err error) { tx.m.reject(label, err) }

func refusal(r certs.Reason, format string, args ...any) error {
	return &certs.RejectError{Reason: r, Err: fmt.Errorf(format, args...)}
}

// snapshot copies the verified peers and the rejections, for status.
func (m *peerSet) snapshot() ([]verifiedPeer, []Rejection, map[certs.Reason]uint64) {
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
