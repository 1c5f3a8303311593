// Package dns is the agent's resolver: it answers for the trust domain
// from the verified peers only (A/AAAA for <hostname>.<td>, PTR for overlay
// addresses, SRV for certified services) and forwards every other query,
// unchanged, to the system's resolvers.
//
// The agent feeds it through [Source]: a snapshot of the peers whose
// certificates it verified and holds unexpired and unrevoked. [Store] is a
// ready Source: the agent calls Store.Set after every change to its peer
// set (admission, removal, revocation, renewal), and the next query sees
// the new set. Entries also carry their certificate's NotAfter, and the
// resolver drops an expired one itself, so an expiry the agent has not yet
// acted on cannot be answered either.
package dns

import (
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// Peer is what a verified peer's certificate says that DNS serves.
type Peer struct {
	Hostname  certs.Hostname
	Addresses []netip.Addr // IP SANs
	Services  []certs.Service
	NotAfter  time.Time // the machine certificate's; zero: never expires here
	// DeviceID and Serial name the certificate the entry comes from, for
	// explaining an answer (Resolver.Explain); answers do not use them.
	DeviceID certs.DeviceID
	Serial   string
}

// PeerOf takes a Peer from a verified identity.
func PeerOf(id certs.Identity) Peer {
	return Peer{Hostname: id.Hostname, Addresses: id.Addresses, Services: id.Services, NotAfter: id.NotAfter,
		DeviceID: id.DeviceID, Serial: id.Serial}
}

// Source gives the resolver the current verified peers. Table is called
// once per query and must be cheap (an atomic load); a peer removed from
// the agent must be absent from the next Table.
type Source interface {
	Table() *Table
}

// Table is an immutable index of peers, built once per change of the peer
// set and shared by all queries.
type Table struct {
	hosts    map[string][]*Peer     // lower-case hostname label
	addrs    map[netip.Addr][]*Peer // overlay address
	services map[string][]provider  // "<name>/<proto>"
}

type provider struct {
	peer *Peer
	port uint16
}

// NewTable indexes peers. The slice and the peers are not retained (the
// table keeps copies).
func NewTable(peers []Peer) *Table {
	t := &Table{
		hosts:    make(map[string][]*Peer, len(peers)),
		addrs:    make(map[netip.Addr][]*Peer, 2*len(peers)),
		services: make(map[string][]provider),
	}
	for i := range peers {
		p := peers[i]
		p.Addresses = append([]netip.Addr(nil), p.Addresses...)
		p.Services = append([]certs.Service(nil), p.Services...)
		h := strings.ToLower(string(p.Hostname))
		t.hosts[h] = append(t.hosts[h], &p)
		for _, a := range p.Addresses {
			t.addrs[a.Unmap()] = append(t.addrs[a.Unmap()], &p)
		}
		for _, s := range p.Services {
			k := s.Name + "/" + string(s.Protocol)
			t.services[k] = append(t.services[k], provider{&p, s.Port})
		}
	}
	return t
}

// Len is the number of peers in the table.
func (t *Table) Len() int {
	n := 0
	for _, ps := range t.hosts {
		n += len(ps)
	}
	return n
}

func live(p *Peer, now time.Time) bool { return p.NotAfter.IsZero() || !now.After(p.NotAfter) }

// Store is a Source the agent updates with Set.
type Store struct{ t atomic.Pointer[Table] }

// Set replaces the peers the resolver answers from; it holds for the next
// query.
func (s *Store) Set(peers []Peer) { s.t.Store(NewTable(peers)) }

// Table implements Source.
func (s *Store) Table() *Table {
	if t := s.t.Load(); t != nil {
		return t
	}
	return emptyTable
}

var emptyTable = NewTable(nil)
