package wgdev

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/certmesh/certmesh/certs"
)

// ErrClosed is returned by operations on a closed Device.
var ErrClosed = errors.New("wgdev: device closed")

// Device is a running WireGuard device. Its methods are safe for
// concurrent use.
type Device struct {
	mode Mode
	name string // kernel interface name or UAPI name; "" if none
	log  *slog.Logger
	wg   *device.Device
	tnet *netstack.Net // Userspace mode only
	port int

	uapi     net.Listener // nil unless Config.UAPI
	uapiDone chan struct{}

	mu     sync.Mutex // serialises configuration changes; guards pub, closed
	pub    certs.WireGuardKey
	closed bool
	done   chan struct{} // closed by Close

	closeOnce sync.Once
	closeErr  error

	routes tunnelRoutes // the routes into the tunnel (routes.go)
}

// Open creates the TUN (kernel or netstack, per cfg.Mode), starts
// wireguard-go on it with cfg.PrivateKey and cfg.ListenPort, brings it up
// and, if asked, opens the UAPI socket. The device starts without peers.
//
// ctx bounds the setup only; the device lives until Close.
func Open(ctx context.Context, cfg Config) (*Device, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("opening WireGuard device: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("opening WireGuard device: %w", err)
	}
	d := &Device{
		mode: cfg.Mode,
		name: cfg.InterfaceName,
		log:  cfg.Logger.With("wg_mode", cfg.Mode.String()),
		done: make(chan struct{}),
	}

	var (
		tdev  tun.Device
		setup func(context.Context) error // runs once wireguard-go owns tdev
	)
	switch cfg.Mode {
	case KernelTUN:
		tdev, err = tun.CreateTUN(cfg.InterfaceName, cfg.MTU)
		if err != nil {
			return nil, fmt.Errorf("creating TUN interface %q: %w", cfg.InterfaceName, err)
		}
		if name, err := tdev.Name(); err == nil {
			d.name = name
		}
		setup = func(ctx context.Context) error { return configureKernelInterface(ctx, d.log, d.name, cfg) }
	case Userspace:
		tdev, d.tnet, err = createNetstack(cfg)
		if err != nil {
			return nil, err
		}
	}
	if d.name != "" {
		d.log = d.log.With("wg_interface", d.name)
	}

	if cfg.WrapTUN != nil {
		tdev = cfg.WrapTUN(tdev)
	}
	// From here on, d.wg owns tdev: closing it closes the TUN.
	bind := newBind()
	if cfg.WrapBind != nil {
		bind = cfg.WrapBind(bind)
	}
	d.wg = device.NewDevice(tdev, newLimitedBind(bind, cfg.Handshakes, d.log), wgLogger(d.log))
	fail := func(err error) (*Device, error) {
		d.Close()
		return nil, err
	}

	if err := d.wg.SetPrivateKey(device.NoisePrivateKey(cfg.PrivateKey)); err != nil {
		return fail(fmt.Errorf("setting WireGuard private key: %w", err))
	}
	d.pub = cfg.PrivateKey.Public()
	var u uapiSet
	u.listenPort(cfg.ListenPort)
	if cfg.Mode == KernelTUN {
		u.line("fwmark", strconv.Itoa(WireGuardMark)) // its own packets bypass the routes into the tunnel (routes.go)
	}
	if err := d.wg.IpcSet(u.String()); err != nil {
		return fail(fmt.Errorf("setting WireGuard listen port %d: %w", cfg.ListenPort, err))
	}
	if setup != nil {
		if err := setup(ctx); err != nil {
			return fail(err)
		}
	}
	if err := d.wg.Up(); err != nil {
		return fail(fmt.Errorf("bringing WireGuard device up: %w", err))
	}
	st, err := d.ipcGet()
	if err != nil {
		return fail(err)
	}
	d.port = st.listenPort
	if cfg.UAPI {
		if err := d.serveUAPI(); err != nil {
			return fail(err)
		}
	}
	d.log.Debug("WireGuard device up", "listen_port", d.port, "public_key", d.pub.String())
	return d, nil
}

// ListenPort returns the UDP port the device is bound to.
func (d *Device) ListenPort() int { return d.port }

// PublicKey returns the device's current public key.
func (d *Device) PublicKey() certs.WireGuardKey {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pub
}

// Mode returns the mode the device was opened in.
func (d *Device) Mode() Mode { return d.mode }

// InterfaceName returns the kernel interface name (KernelTUN mode) or the
// configured name (Userspace mode, possibly "").
func (d *Device) InterfaceName() string { return d.name }

// UpsertPeer adds the peer or updates it in place: its allowed IPs are
// replaced by p.AllowedIPs, its keepalive set, and its endpoint set if
// p.Endpoint is valid. Other peers and the peer's existing session are not
// disturbed.
func (d *Device) UpsertPeer(p Peer) error {
	ka, err := p.validate()
	if err != nil {
		return fmt.Errorf("configuring WireGuard peer: %w", err)
	}
	var u uapiSet
	u.peer(p.PublicKey)
	u.replaceAllowedIPs()
	for _, a := range p.AllowedIPs {
		u.allowedIP(a)
	}
	if p.Endpoint.IsValid() {
		u.endpoint(p.Endpoint)
	}
	u.persistentKeepalive(ka)

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if p.PublicKey == d.pub {
		// wireguard-go would silently ignore it.
		return fmt.Errorf("configuring WireGuard peer %v: that is this device's own public key", p.PublicKey)
	}
	if err := d.wg.IpcSet(u.String()); err != nil {
		return fmt.Errorf("configuring WireGuard peer %v: %w", p.PublicKey, err)
	}
	return nil
}

// RemovePeer removes the peer and its allowed IPs, ending its sessions.
// Removing an unknown peer is not an error.
func (d *Device) RemovePeer(k certs.WireGuardKey) error {
	var u uapiSet
	u.peer(k)
	u.remove()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if err := d.wg.IpcSet(u.String()); err != nil {
		return fmt.Errorf("removing WireGuard peer %v: %w", k, err)
	}
	return nil
}

// Kick sends the peer a keepalive, which starts a new round of handshake
// attempts if it has no session (after moving it to another endpoint:
// wireguard-go gives up on a peer after 90 s of unanswered attempts).
// An unknown peer is ignored.
func (d *Device) Kick(k certs.WireGuardKey) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if p := d.wg.LookupPeer(device.NoisePublicKey(k)); p != nil {
		p.SendKeepalive()
	}
	return nil
}

// SetPrivateKey replaces the device's private key (key rotation). Existing
// sessions are expired; peers reconnect once they know the new public key.
// A peer whose public key equals the new key's is removed.
func (d *Device) SetPrivateKey(k PrivateKey) error {
	if k.IsZero() {
		return errors.New("setting WireGuard private key: key is zero")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if err := d.wg.SetPrivateKey(device.NoisePrivateKey(k)); err != nil {
		return fmt.Errorf("setting WireGuard private key: %w", err)
	}
	d.pub = k.Public()
	return nil
}

// Peers returns the configured peers and their statistics, ordered by
// public key.
func (d *Device) Peers() ([]PeerStats, error) {
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	st, err := d.ipcGet()
	if err != nil {
		return nil, err
	}
	slices.SortFunc(st.peers, func(a, b PeerStats) int { return bytes.Compare(a.PublicKey[:], b.PublicKey[:]) })
	return st.peers, nil
}

// ipcGet reads and parses the device state. The raw text (which includes
// private_key) is never materialised as a string, logged or returned.
func (d *Device) ipcGet() (ipcState, error) {
	var p ipcGetParser
	if err := d.wg.IpcGetOperation(&p); err != nil {
		return ipcState{}, fmt.Errorf("reading WireGuard device state: %w", err)
	}
	st, err := p.finish()
	if err != nil {
		return ipcState{}, fmt.Errorf("reading WireGuard device state: %w", err)
	}
	return st, nil
}

// Net returns the netstack through which the mesh is reached in Userspace
// mode (DialContext, ListenTCP, DialPing, ...); nil in KernelTUN mode.
func (d *Device) Net() *netstack.Net { return d.tnet }

// Done is closed when Close is called.
func (d *Device) Done() <-chan struct{} { return d.done }

// Close shuts the device down: it closes the UAPI socket (removing its
// file), the UDP sockets and the TUN. In KernelTUN mode closing the TUN
// deletes the interface, with its addresses and routes. Close is idempotent.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		d.mu.Lock()
		d.closed = true
		d.mu.Unlock()
		close(d.done)
		if d.uapi != nil {
			// wireguard-go's UAPIListener.Close closes its inotify
			// descriptor, which can end its watcher goroutine (closing
			// the cancel pipe) before Close writes to that pipe: the
			// write then fails with "file already closed" although
			// everything was closed. Only other errors are reported.
			if err := d.uapi.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
				d.closeErr = fmt.Errorf("closing UAPI socket: %w", err)
			}
			<-d.uapiDone
		}
		d.routes.close(d.log)
		d.wg.Close() // closes bind and TUN; waits for its goroutines
		d.log.Debug("WireGuard device closed")
	})
	return d.closeErr
}
