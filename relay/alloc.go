package relay

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/relaycred"
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

// relayConn is an allocation's relay socket. It relays nothing before the
// allocation has an owner (its credential's device and expiry), nothing
// once that credential expired (the first datagram after that closes it,
// which ends the allocation), and never to the relay host itself except
// to live allocations of this relay.
type relayConn struct {
	*net.UDPConn
	r       *Relay
	port    uint16
	expires atomic.Int64 // unix nanoseconds; 0: no owner yet
	device  certs.DeviceID
	serial  string // the credential's certificate serial, hex ("" if not named)
	tuple   string
	once    sync.Once
}

func (c *relayConn) live() bool {
	e := c.expires.Load()
	return e != 0 && c.r.now().UnixNano() < e
}

// ReadFrom reads datagrams from peers (pion's permission check follows).
func (c *relayConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, from, err := c.UDPConn.ReadFromUDPAddrPort(b)
		if err != nil {
			return n, nil, err
		}
		if !c.live() {
			_ = c.Close()
			return 0, nil, errExpired
		}
		if from.Addr().Unmap() == c.r.policy.relayIP && !c.r.allocs.live(from.Port()) {
			continue
		}
		return n, net.UDPAddrFromAddrPort(from), nil
	}
}

// WriteTo sends a client's datagram to a peer.
func (c *relayConn) WriteTo(b []byte, to net.Addr) (int, error) {
	if !c.live() {
		_ = c.Close()
		return 0, errExpired
	}
	ua, ok := to.(*net.UDPAddr)
	if !ok {
		return 0, errRefusedPeer
	}
	dst := ua.AddrPort()
	ip := dst.Addr().Unmap()
	if !c.r.policy.permit(ip) || (ip == c.r.policy.relayIP && !c.r.allocs.live(dst.Port())) {
		return 0, errRefusedPeer
	}
	return c.UDPConn.WriteToUDPAddrPort(b, dst)
}

// Close closes the socket and forgets it.
func (c *relayConn) Close() error {
	var err error
	c.once.Do(func() {
		c.r.allocs.mu.Lock()
		delete(c.r.allocs.byPort, c.port)
		c.r.allocs.mu.Unlock()
		err = c.UDPConn.Close()
	})
	return err
}

// live reports whether port is the relay socket of a live allocation.
func (a *allocs) live(port uint16) bool {
	a.mu.Lock()
	c := a.byPort[port]
	a.mu.Unlock()
	return c != nil && c.live()
}

// addrGen creates relay sockets (turn.RelayAddressGenerator).
type addrGen struct{ r *Relay }

func (addrGen) Validate() error { return nil }

func (g addrGen) AllocatePacketConn(_ string, port int) (net.PacketConn, net.Addr, error) {
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(g.r.bindIP, uint16(port))))
	if err != nil {
		return nil, nil, err
	}
	p := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	c := &relayConn{UDPConn: pc, r: g.r, port: p}
	a := &g.r.allocs
	a.mu.Lock()
	a.byPort[p] = c
	a.mu.Unlock()
	return c, net.UDPAddrFromAddrPort(netip.AddrPortFrom(g.r.policy.relayIP, p)), nil
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
