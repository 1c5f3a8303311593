// Package evilrelay is a hostile TURN relay for tests. It is a real
// pion/turn server holding a relay key the CA issues credentials for, so
// real agents allocate on it and relay their WireGuard datagrams through
// it, and it does relay them; but it also records every datagram on its
// clients' socket, lies in its STUN answers (every client is told it is
// at an address of the relay's choosing), answers each ping a client
// sends through it with a forged pong at once, and on Inject sends its
// clients replayed, modified and forged datagrams through their own
// allocations (attack.go). What a client must never accept is the test's
// to check.
package evilrelay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v4"

	"github.com/certmesh/certmesh/internal/pionlog"
	"github.com/certmesh/certmesh/internal/relaycred"
)

// Config configures a hostile relay.
type Config struct {
	// Conn is the clients' socket (TURN and STUN over UDP).
	Conn net.PacketConn
	// ListenRelayed opens an allocation's relayed socket.
	ListenRelayed func() (net.PacketConn, error)
	// RelayIP is the address in allocations.
	RelayIP netip.Addr
	// Key is the relay key the CA issues this relay's passwords under.
	Key relaycred.Key
	// Realm is the mesh's trust domain.
	Realm string
	// MappedLie, if valid, is the address every STUN Binding answer says
	// the client is at (to clients without an allocation).
	MappedLie netip.AddrPort
	// Marker is the byte string the test sends through the tunnel: every
	// datagram the relay carries is searched for it.
	Marker []byte
	Logger *slog.Logger
}

// Relay is a running hostile relay.
type Relay struct {
	cfg  Config
	srv  *turn.Server
	conn *tap

	mu      sync.Mutex
	clients map[netip.AddrPort]*client
	stats   Stats
}

// Stats is what the relay saw and did.
type Stats struct {
	Datagrams    int // relayed datagrams, both ways
	WireGuard    int // ... of which WireGuard transport data (type 4)
	MarkerSeen   int // datagrams containing Config.Marker
	Lies         int // STUN Binding answers rewritten
	ForgedPongs  int // forged pongs sent at once for pings through the relay
	Injected     int // datagrams Inject sent
	Allocations  int
	PingsRelayed int
}

// client is what the relay knows of one client (by its address as the
// relay sees it).
type client struct {
	addr     netip.AddrPort
	relayed  netip.AddrPort
	channels map[uint16]netip.AddrPort
	// toClient are the datagrams relayed to the client, by the peer
	// address they came from (bounded), for replays.
	toClient []relayed
	lastPong []byte // the last genuine pong relayed to the client
	peerID   []byte // sender ID of the probes its peer sends it
}

type relayed struct {
	from netip.AddrPort
	b    []byte
}

// maxKept bounds the datagrams kept per client for replays.
const maxKept = 4096

// New starts a hostile relay on cfg.Conn.
func New(cfg Config) (*Relay, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Relay{cfg: cfg, clients: map[netip.AddrPort]*client{}}
	r.conn = &tap{PacketConn: cfg.Conn, r: r}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm: cfg.Realm,
		AuthHandler: func(username, realm string, _ net.Addr) ([]byte, bool) {
			return turn.GenerateAuthKey(username, realm, cfg.Key.Password(username)), true
		},
		LoggerFactory: pionlog.Factory{Log: cfg.Logger},
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: r.conn, RelayAddressGenerator: gen{r},
			PermissionHandler: turn.DefaultPermissionHandler}},
	})
	if err != nil {
		return nil, fmt.Errorf("evilrelay: %w", err)
	}
	r.srv = srv
	return r, nil
}

// Close stops the relay.
func (r *Relay) Close() error { return r.srv.Close() }

// Stats returns what the relay saw so far.
func (r *Relay) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Relayed are the relayed addresses of the relay's allocations.
func (r *Relay) Relayed() []netip.AddrPort {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []netip.AddrPort
	for _, c := range r.clients {
		if c.relayed.IsValid() {
			out = append(out, c.relayed)
		}
	}
	return out
}

type gen struct{ r *Relay }

func (g gen) Validate() error { return nil }

func (g gen) AllocatePacketConn(string, int) (net.PacketConn, net.Addr, error) {
	pc, err := g.r.cfg.ListenRelayed()
	if err != nil {
		return nil, nil, err
	}
	a := pc.LocalAddr().(*net.UDPAddr)
	return pc, &net.UDPAddr{IP: g.r.cfg.RelayIP.AsSlice(), Port: a.Port}, nil
}

func (g gen) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, errors.New("evilrelay: no TCP allocations")
}

// tap is the clients' socket, seen by the relay on the way in and out.
type tap struct {
	net.PacketConn
	r *Relay
}

func (t *tap) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := t.PacketConn.ReadFrom(b)
	if err == nil {
		t.r.fromClient(from.(*net.UDPAddr).AddrPort(), b[:n])
	}
	return n, from, err
}

func (t *tap) WriteTo(b []byte, to net.Addr) (int, error) {
	out := t.r.toClient(to.(*net.UDPAddr).AddrPort(), b)
	if _, err := t.PacketConn.WriteTo(out, to); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (r *Relay) clientLocked(a netip.AddrPort) *client {
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	c := r.clients[a]
	if c == nil {
		c = &client{addr: a, channels: map[uint16]netip.AddrPort{}}
		r.clients[a] = c
	}
	return c
}

// payload is what a TURN datagram carries between a client and a peer:
// ChannelData, or a Send or Data indication.
func payload(c *client, b []byte) (peer netip.AddrPort, data []byte, ok bool) {
	if len(b) >= 4 && b[0] >= 0x40 && b[0] <= 0x7F {
		n := int(binary.BigEndian.Uint16(b[2:4]))
		if 4+n > len(b) {
			return peer, nil, false
		}
		peer, ok = c.channels[binary.BigEndian.Uint16(b[:2])]
		return peer, b[4 : 4+n], ok
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if m.Decode() != nil || m.Type.Class != stun.ClassIndication ||
		(m.Type.Method != stun.MethodSend && m.Type.Method != stun.MethodData) {
		return peer, nil, false
	}
	var pa stun.XORMappedAddress
	d, err := m.Get(stun.AttrData)
	if err != nil || pa.GetFromAs(m, stun.AttrXORPeerAddress) != nil {
		return peer, nil, false
	}
	return xorAddr(pa), d, true
}

func xorAddr(a stun.XORMappedAddress) netip.AddrPort {
	ip, _ := netip.AddrFromSlice(a.IP)
	return netip.AddrPortFrom(ip.Unmap(), uint16(a.Port))
}

// count notes one relayed datagram.
func (r *Relay) countLocked(data []byte) {
	r.stats.Datagrams++
	if len(data) >= 4 && data[0] == 4 && data[1] == 0 && data[2] == 0 && data[3] == 0 {
		r.stats.WireGuard++
	}
	if len(r.cfg.Marker) > 0 && bytes.Contains(data, r.cfg.Marker) {
		r.stats.MarkerSeen++
	}
}

// fromClient notes a datagram a client sent: a channel it binds, a
// datagram it relays (a ping among them is answered with a forged pong).
func (r *Relay) fromClient(from netip.AddrPort, b []byte) {
	r.mu.Lock()
	c := r.clientLocked(from)
	if m := (&stun.Message{Raw: append([]byte(nil), b...)}); len(b) >= 20 && b[0] < 0x40 && m.Decode() == nil &&
		m.Type == stun.NewType(stun.MethodChannelBind, stun.ClassRequest) {
		var pa stun.XORMappedAddress
		if ch, err := m.Get(stun.AttrChannelNumber); err == nil && len(ch) >= 2 && pa.GetFromAs(m, stun.AttrXORPeerAddress) == nil {
			c.channels[binary.BigEndian.Uint16(ch)] = xorAddr(pa)
		}
	}
	peer, data, ok := payload(c, b)
	if !ok {
		r.mu.Unlock()
		return
	}
	r.countLocked(data)
	var forged []byte
	if isProbe(data, 1) {
		r.stats.PingsRelayed++
		if !r.ownLocked(peer) {
			forged = forgePong(data, c)
		}
	}
	r.mu.Unlock()
	if forged != nil && r.send(c.addr, peer, forged) == nil {
		r.mu.Lock()
		r.stats.ForgedPongs++
		r.mu.Unlock()
	}
}

// ownLocked reports whether ap is one of the relay's allocations (a ping
// there reaches the peer, which answers it itself).
func (r *Relay) ownLocked(ap netip.AddrPort) bool {
	for _, c := range r.clients {
		if c.relayed == ap {
			return true
		}
	}
	return false
}

// toClient notes (and may rewrite) a datagram to a client: an allocation
// made, a datagram relayed to it, a STUN Binding answer (a lie).
func (r *Relay) toClient(to netip.AddrPort, b []byte) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.clientLocked(to)
	if peer, data, ok := payload(c, b); ok {
		r.countLocked(data)
		if len(c.toClient) < maxKept {
			c.toClient = append(c.toClient, relayed{peer, append([]byte(nil), data...)})
		}
		if isProbe(data, 1) || isProbe(data, 2) {
			c.peerID = append([]byte(nil), data[5:13]...)
		}
		if isProbe(data, 2) {
			c.lastPong = append([]byte(nil), data...)
		}
		return b
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if len(b) < 20 || b[0] >= 0x40 || m.Decode() != nil {
		return b
	}
	switch m.Type {
	case stun.NewType(stun.MethodAllocate, stun.ClassSuccessResponse):
		var ra stun.XORMappedAddress
		if ra.GetFromAs(m, stun.AttrXORRelayedAddress) == nil {
			c.relayed = xorAddr(ra)
			r.stats.Allocations++
		}
	case stun.BindingSuccess:
		// Not to a client with an allocation: its relay client checks
		// the mapped address against its allocation's (and would fail
		// over); the lie is for the agent's STUN from its WireGuard port.
		if !r.cfg.MappedLie.IsValid() || c.relayed.IsValid() {
			return b
		}
		lie, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
			&stun.XORMappedAddress{IP: r.cfg.MappedLie.Addr().AsSlice(), Port: int(r.cfg.MappedLie.Port())}, stun.Fingerprint)
		if err == nil {
			r.stats.Lies++
			return lie.Raw
		}
	}
	return b
}

// send writes data to client as a Data indication from peer, through the
// client's own allocation as the relay would relay a peer's datagram.
func (r *Relay) send(clientAddr, peer netip.AddrPort, data []byte) error {
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodData, stun.ClassIndication),
		&peerAttr{peer}, rawData(data), stun.Fingerprint)
	if err != nil {
		return err
	}
	_, err = r.cfg.Conn.WriteTo(m.Raw, net.UDPAddrFromAddrPort(clientAddr))
	return err
}

type peerAttr struct{ ap netip.AddrPort }

func (p *peerAttr) AddTo(m *stun.Message) error {
	return (&stun.XORMappedAddress{IP: p.ap.Addr().AsSlice(), Port: int(p.ap.Port())}).AddToAs(m, stun.AttrXORPeerAddress)
}

type rawData []byte

func (d rawData) AddTo(m *stun.Message) error { m.Add(stun.AttrData, d); return nil }

// Probe layout (agent/path): 67 bytes, magic CE 63 6D 01, kind at 4
// (1 ping, 2 pong), sender ID 5..13, transaction 13..25, clock 25..33,
// observed address 33..51, MAC 51..67.
const probeSize = 67

func isProbe(b []byte, kind byte) bool {
	return len(b) == probeSize && b[0] == 0xCE && b[1] == 'c' && b[2] == 'm' && b[3] == 0x01 && b[4] == kind
}

// forgePong answers ping as its receiver would, but under no key: the
// last genuine pong the client got with the ping's transaction ID (a
// replayed MAC), or a pong with the peer's sender ID and a zero MAC.
func forgePong(ping []byte, c *client) []byte {
	p := make([]byte, probeSize)
	switch {
	case c.lastPong != nil:
		copy(p, c.lastPong)
	case c.peerID != nil:
		copy(p, ping)
		p[4] = 2
		copy(p[5:13], c.peerID)
	default:
		return nil
	}
	copy(p[13:25], ping[13:25])
	binary.BigEndian.PutUint64(p[25:33], uint64(time.Now().UnixMilli()))
	a16 := c.addr.Addr().As16()
	copy(p[33:49], a16[:])
	binary.BigEndian.PutUint16(p[49:51], c.addr.Port())
	return p
}
