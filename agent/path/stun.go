package path

import (
	"net/netip"
	"slices"
	"time"

	"github.com/pion/stun/v3"
)

// stunState is the STUN client: Binding requests to each configured
// server from the WireGuard socket, and the server-reflexive addresses the
// answers name. Guarded by Manager.mu.
type stunState struct {
	t        Timers
	servers  map[netip.AddrPort]*stunServer
	pending  map[[stun.TransactionIDSize]byte]stunPending
	reported []netip.AddrPort // what OnReflexive was last told
}

type stunServer struct {
	next       time.Time      // next request
	retry      time.Duration  // wait before the next unanswered retry
	mapped     netip.AddrPort // our address as this server saw it
	answeredAt time.Time
}

type stunPending struct {
	server netip.AddrPort
	at     time.Time
}

// maxSTUNPending bounds the requests waiting for an answer.
const maxSTUNPending = 256

func (s *stunState) init(servers []netip.AddrPort, t Timers) {
	s.t = t
	s.servers = map[netip.AddrPort]*stunServer{}
	s.pending = map[[stun.TransactionIDSize]byte]stunPending{}
	for _, a := range servers {
		s.servers[unmap(a)] = &stunServer{retry: t.STUNRetry}
	}
}

// step sends the Binding requests that are due and forgets addresses no
// server has confirmed for three intervals.
func (s *stunState) step(now time.Time, out []outgoing) []outgoing {
	for tx, p := range s.pending {
		if now.Sub(p.at) >= s.t.PingTimeout {
			delete(s.pending, tx)
		}
	}
	for addr, sv := range s.servers {
		if sv.mapped.IsValid() && now.Sub(sv.answeredAt) >= 3*s.t.STUN {
			sv.mapped = netip.AddrPort{}
		}
		if now.Before(sv.next) || len(s.pending) >= maxSTUNPending {
			continue
		}
		msg, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
		if err != nil {
			continue
		}
		s.pending[msg.TransactionID] = stunPending{server: addr, at: now}
		out = append(out, outgoing{msg.Raw, Route{Addr: addr}})
		// Until it answers, retry sooner (doubling up to the interval).
		sv.next = now.Add(sv.retry)
		sv.retry = min(2*sv.retry, s.t.STUN)
	}
	return out
}

// answer takes a decoded STUN message from addr; it reports whether it
// was the answer to one of our requests.
func (s *stunState) answer(msg *stun.Message, from netip.AddrPort, now time.Time) bool {
	if msg.Type != stun.BindingSuccess {
		return false
	}
	p, ok := s.pending[msg.TransactionID]
	if !ok || p.server != from {
		return false // not ours, or not from the server we asked
	}
	sv := s.servers[p.server]
	if sv == nil {
		return false
	}
	var mapped netip.AddrPort
	var xa stun.XORMappedAddress
	if err := xa.GetFrom(msg); err == nil {
		mapped = addrPortOfIP(xa.IP, xa.Port)
	} else {
		var ma stun.MappedAddress
		if err := ma.GetFrom(msg); err != nil {
			return false
		}
		mapped = addrPortOfIP(ma.IP, ma.Port)
	}
	if !mapped.IsValid() || mapped.Port() == 0 {
		return false
	}
	delete(s.pending, msg.TransactionID)
	sv.mapped, sv.answeredAt = mapped, now
	sv.retry, sv.next = s.t.STUNRetry, now.Add(s.t.STUN)
	return true
}

func addrPortOfIP(ip []byte, port int) netip.AddrPort {
	a, ok := netip.AddrFromSlice(ip)
	if !ok || port <= 0 || port > 0xFFFF {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}

// current is the set of reflexive addresses the servers name, sorted.
func (s *stunState) current() []netip.AddrPort {
	var out []netip.AddrPort
	for _, sv := range s.servers {
		if sv.mapped.IsValid() && !slices.Contains(out, sv.mapped) {
			out = append(out, sv.mapped)
		}
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return out
}

// takeChange returns the reflexive addresses and whether they changed
// since the last call that said so.
func (s *stunState) takeChange() ([]netip.AddrPort, bool) {
	cur := s.current()
	if slices.Equal(cur, s.reported) {
		return cur, false
	}
	s.reported = cur
	return cur, true
}

// handleSTUN takes a STUN message off the socket.
func (m *Manager) handleSTUN(b []byte, from netip.AddrPort) {
	msg := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := msg.Decode(); err != nil {
		return
	}
	m.mu.Lock()
	ok := m.stun.answer(msg, from, time.Now())
	m.mu.Unlock()
	if ok {
		m.wake()
	}
}

// Reflexive returns this agent's server-reflexive addresses, as the STUN
// servers last saw them.
func (m *Manager) Reflexive() []netip.AddrPort {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stun.current()
}
