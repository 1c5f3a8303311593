package relay

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/relaycred"
	"github.com/certmesh/certmesh/internal/sockbuf"
)

var (
	errExpired     = errors.New("relay: the credential of this allocation expired (or the device was cut off)")
	errRefusedPeer = errors.New("relay: destination refused (the relay host itself, or not a live allocation of this relay)")
	errNoTCP       = errors.New("relay: TCP allocations (RFC 6062) are not offered")
)

// allocs tracks this relay's allocations: their relay sockets by port,
// and once pion has created the allocation, its 5-tuple and owner.
type allocs struct {
	mu        sync.Mutex
	byPort    map[uint16]*relayConn
	byTuple   map[string]*relayConn
	perDevice map[certs.DeviceID]int
	// cut are devices Cut off, until any credential they may still hold
	// has expired (relaycred.MaxLifetime after the cut).
	cut map[certs.DeviceID]time.Time
	// revoked are the serials (hex) of revoked machine certificates, from
	// the last CRL SetRevoked installed.
	revoked map[string]struct{}
}

func tupleKey(src, dst net.Addr) string {
	return dst.Network() + " " + src.String() + " " + dst.String()
}

// live reports whether port is the relay socket of a live allocation.
func (a *allocs) live(port uint16) bool { return a.local(port) != nil }

// local returns the relay socket of the live allocation on port (nil if
// there is none).
func (a *allocs) local(port uint16) *relayConn {
	a.mu.Lock()
	c := a.byPort[port]
	a.mu.Unlock()
	if c == nil || !c.live() {
		return nil
	}
	return c
}

// addrGen creates relay sockets (turn.RelayAddressGenerator).
type addrGen struct{ r *Relay }

func (addrGen) Validate() error { return nil }

func (g addrGen) AllocatePacketConn(_ string, port int) (net.PacketConn, net.Addr, error) {
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(g.r.bindIP, uint16(port))))
	if err != nil {
		return nil, nil, err
	}
	sockbuf.Set(pc)
	c := newRelayConn(g.r, pc)
	a := &g.r.allocs
	a.mu.Lock()
	a.byPort[c.port] = c
	a.mu.Unlock()
	go c.readSocket()
	return c, net.UDPAddrFromAddrPort(netip.AddrPortFrom(g.r.policy.relayIP, c.port)), nil
}

func (addrGen) AllocateConn(string, int) (net.Conn, net.Addr, error) { return nil, nil, errNoTCP }

// created gives a new allocation its owner (pion calls it before the
// allocation relays anything).
func (r *Relay) created(src, dst net.Addr, username string, relayAddr net.Addr) {
	u, err := relaycred.ParseUsername(username)
	ua, _ := relayAddr.(*net.UDPAddr)
	a := &r.allocs
	a.mu.Lock()
	var c *relayConn
	if ua != nil {
		c = a.byPort[uint16(ua.Port)]
	}
	if c != nil && err == nil {
		c.device, c.tuple = u.Device, tupleKey(src, dst)
		if u.Serial != nil {
			c.serial = u.Serial.Text(16)
		}
		c.expires.Store(u.Expires.UnixNano())
		a.byTuple[c.tuple] = c
		a.perDevice[u.Device]++
	}
	a.mu.Unlock()
	if c != nil && err != nil {
		_ = c.Close() // cannot happen: the username was checked
	}
	if c != nil && err == nil {
		r.log.Info("relay allocation", "device", u.Device, "client", src.String(), "relayed", relayAddr.String(), "expires", u.Expires)
	}
}

// deleted forgets an allocation pion removed.
func (r *Relay) deleted(src, dst net.Addr) {
	a := &r.allocs
	a.mu.Lock()
	defer a.mu.Unlock()
	k := tupleKey(src, dst)
	c := a.byTuple[k]
	if c == nil {
		return
	}
	delete(a.byTuple, k)
	if a.perDevice[c.device]--; a.perDevice[c.device] <= 0 {
		delete(a.perDevice, c.device)
	}
}

// isCut reports whether device was Cut off.
func (a *allocs) isCut(device certs.DeviceID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.cut[device]
	return ok
}

// quota admits a new allocation while the relay and the device are under
// their limits.
func (r *Relay) quota(username string) bool {
	u, err := relaycred.ParseUsername(username)
	if err != nil {
		return false
	}
	a := &r.allocs
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.byPort) < r.cfg.MaxAllocations && a.perDevice[u.Device] < r.cfg.MaxPerDevice
}

// Cut ends every allocation of a device at once (it was revoked) and
// refuses its credentials from now on, even those not expired yet; it
// returns how many allocations there were.
func (r *Relay) Cut(device certs.DeviceID) int {
	a := &r.allocs
	a.mu.Lock()
	now := r.now()
	for d, until := range a.cut {
		if now.After(until) {
			delete(a.cut, d)
		}
	}
	a.cut[device] = now.Add(relaycred.MaxLifetime)
	n := a.endLocked(func(c *relayConn) bool { return c.device == device })
	if n > 0 {
		r.log.Info("relay allocations of a revoked device cut", "device", device, "allocations", n)
	}
	return n
}

// endLocked ends the allocations match selects, unlocking a.mu (held on
// entry), and returns how many it ended.
func (a *allocs) endLocked(match func(*relayConn) bool) int {
	var cut []*relayConn
	for _, c := range a.byTuple {
		if match(c) {
			c.expires.Store(1) // relays nothing from now on
			cut = append(cut, c)
		}
	}
	a.mu.Unlock()
	for _, c := range cut {
		_ = c.Close()
	}
	return len(cut)
}
