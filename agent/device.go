package agent

import (
	"bytes"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
)

// dataPlane is what the device stage needs of the WireGuard device.
type dataPlane interface {
	UpsertPeer(p wgdev.Peer) error
	RemovePeer(k certs.WireGuardKey) error
	Peers() ([]wgdev.PeerStats, error)
	Kick(k certs.WireGuardKey) error // start handshaking now
}

// KeepAlive is the persistent keepalive configured for every peer, so that
// NAT mappings stay open and handshakes stay fresh.
const KeepAlive = 25 * time.Second

// KeepaliveDelay is how long the agent with the higher WireGuard key
// waits before turning a new peer's keepalive on (see apply).
var KeepaliveDelay = 2 * time.Second

// deviceStage is the last stage: it configures the WireGuard device with
// the admitted peers, key and AllowedIPs from the certificate and the
// endpoint the path stage chose, and keeps the device holding exactly
// those (undoing a half-applied change, removing anything else).
type deviceStage struct {
	dev  dataPlane
	self certs.WireGuardKey // ours: the lower key starts a handshake
	log  *slog.Logger

	mu         sync.Mutex
	configured map[certs.DeviceID]wgdev.Peer // what each admitted device's peer is configured as
	// routes are the routed prefixes each device's peer holds beyond its
	// certified addresses (the route stage's choice, routes.go).
	routes map[certs.DeviceID][]netip.Prefix
}

func newDeviceStage(dev dataPlane, self certs.WireGuardKey, log *slog.Logger) *deviceStage {
	return &deviceStage{dev: dev, self: self, log: log, configured: map[certs.DeviceID]wgdev.Peer{},
		routes: map[certs.DeviceID][]netip.Prefix{}}
}

// peerConfig is the WireGuard configuration of a verified peer: key and
// AllowedIPs from its certificate (its addresses, and the routes of it the
// route stage chose), and the endpoint (unset: the peer can still reach
// us).
func (d *deviceStage) peerConfig(id certs.Identity, ep netip.AddrPort) wgdev.Peer {
	allowed := append(id.AllowedIPs(), d.routes[id.DeviceID]...)
	return wgdev.Peer{PublicKey: id.WireGuardKey, AllowedIPs: allowed, PersistentKeepalive: KeepAlive, Endpoint: ep}
}

// apply configures device id.DeviceID's peer. On an error the device's
// previous configuration is put back or, if that fails too, removed
// (lost): the device never holds a peer the agent does not track.
func (d *deviceStage) apply(id certs.Identity, ep netip.AddrPort) (lost bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	wp := d.peerConfig(id, ep)
	prev, had := d.configured[id.DeviceID]
	// Two agents learn of each other at the same moment; if both started
	// a handshake at once (a keepalive is sent as soon as it is set),
	// wireguard-go can end up with crossed sessions and a direction that
	// stays silent until its 15 s retry. The agent with the lower key
	// starts; the other turns its keepalive on a little later.
	newKey := !had || prev.PublicKey != id.WireGuardKey
	delayKeepalive := newKey && bytes.Compare(d.self[:], id.WireGuardKey[:]) >= 0
	if delayKeepalive {
		wp.PersistentKeepalive = 0
	}
	if err := d.dev.UpsertPeer(wp); err != nil {
		// wireguard-go may have applied part of the change: take the key
		// out and put the previous configuration back.
		if newKey {
			d.removeKey(id.WireGuardKey, "undoing a failed peer update")
		}
		if had {
			prev.PersistentKeepalive = KeepAlive
			if rerr := d.dev.UpsertPeer(prev); rerr != nil {
				d.removeKey(prev.PublicKey, "undoing a failed peer update")
				delete(d.configured, id.DeviceID)
				return true, err
			}
		}
		return false, err
	}
	// Key rotation: the new key took over the addresses; drop the old one.
	if had && prev.PublicKey != id.WireGuardKey {
		if err := d.dev.RemovePeer(prev.PublicKey); err != nil {
			d.log.Error("removing rotated WireGuard key", "device", id.DeviceID, "err", err)
		}
	}
	d.configured[id.DeviceID] = wp
	if delayKeepalive {
		d.enableKeepaliveLater(id.DeviceID, id.WireGuardKey)
	}
	return false, nil
}

// enableKeepaliveLater turns the keepalive of a peer on after
// KeepaliveDelay, if it is still configured with that key.
func (d *deviceStage) enableKeepaliveLater(dev certs.DeviceID, k certs.WireGuardKey) {
	time.AfterFunc(KeepaliveDelay, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		wp, ok := d.configured[dev]
		if !ok || wp.PublicKey != k {
			return
		}
		wp.PersistentKeepalive = KeepAlive
		wp.Endpoint = netip.AddrPort{} // the keepalive only: the endpoint in use (the path layer's) stays
		if err := d.dev.UpsertPeer(wp); err != nil {
			d.log.Warn("turning on keepalive", "device", dev, "err", err)
			return
		}
		d.configured[dev] = wp
	})
}

// move points device id.DeviceID's peer at another endpoint and starts a
// handshake there.
func (d *deviceStage) move(id certs.Identity, ep netip.AddrPort) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	wp := d.peerConfig(id, ep)
	if err := d.dev.UpsertPeer(wp); err != nil {
		return err
	}
	d.configured[id.DeviceID] = wp
	if err := d.dev.Kick(id.WireGuardKey); err != nil {
		d.log.Warn("starting a handshake with a peer", "device", id.DeviceID, "err", err)
	}
	return nil
}

// remove takes a device's peer out of WireGuard.
func (d *deviceStage) remove(dev certs.DeviceID, why string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.routes, dev)
	wp, ok := d.configured[dev]
	if !ok {
		return
	}
	delete(d.configured, dev)
	if err := d.dev.RemovePeer(wp.PublicKey); err != nil {
		d.log.Error("removing peer", "device", dev, "why", why, "err", err)
	}
}

// lastHandshakes reports each configured key's last handshake.
func (d *deviceStage) lastHandshakes() (map[certs.WireGuardKey]time.Time, error) {
	stats, err := d.dev.Peers()
	if err != nil {
		return nil, err
	}
	last := make(map[certs.WireGuardKey]time.Time, len(stats))
	for _, s := range stats {
		last[s.PublicKey] = s.LastHandshake
	}
	return last, nil
}

// reconcile removes from the device any peer the agent does not hold as
// admitted: whatever went wrong before, the device ends up with exactly
// the admitted peers.
func (d *deviceStage) reconcile() {
	d.mu.Lock()
	defer d.mu.Unlock()
	stats, err := d.dev.Peers()
	if err != nil {
		d.log.Error("cannot list the WireGuard device's peers to remove unverified ones", "err", err)
		return
	}
	want := make(map[certs.WireGuardKey]bool, len(d.configured))
	for _, wp := range d.configured {
		want[wp.PublicKey] = true
	}
	for _, s := range stats {
		if !want[s.PublicKey] {
			d.log.Warn("removing a WireGuard peer that is not verified", "key", s.PublicKey)
			d.removeKey(s.PublicKey, "removing an unverified peer")
		}
	}
}

// removeKey takes a key out of the WireGuard device. A failure leaves a
// peer the agent does not trust configured: it is logged as an error, and
// the next sweep's reconcile tries again.
func (d *deviceStage) removeKey(k certs.WireGuardKey, why string) {
	if err := d.dev.RemovePeer(k); err != nil {
		d.log.Error("WireGuard peer not removed: "+why, "key", k, "err", err)
	}
}

// setRoutes makes routes the prefixes device dev's peer holds beyond its
// certified addresses, on the device at once if the peer is configured
// (its endpoint, which the path layer may have moved, stays). A prefix a
// WireGuard peer takes leaves whichever peer held it before.
func (d *deviceStage) setRoutes(dev certs.DeviceID, routes []netip.Prefix) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.routes[dev]
	if len(routes) == 0 {
		delete(d.routes, dev)
	} else {
		d.routes[dev] = slices.Clone(routes)
	}
	wp, ok := d.configured[dev]
	if !ok {
		return nil
	}
	wp.AllowedIPs = append(slices.DeleteFunc(slices.Clone(wp.AllowedIPs), func(p netip.Prefix) bool {
		return slices.Contains(old, p)
	}), routes...)
	wp.Endpoint = netip.AddrPort{}
	if err := d.dev.UpsertPeer(wp); err != nil {
		return err
	}
	d.configured[dev] = wp
	return nil
}
