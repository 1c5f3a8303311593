package wgdev

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
)

// Mode selects how the WireGuard device is attached to the host.
type Mode int

const (
	// KernelTUN puts the device on a kernel TUN interface configured with
	// netlink (addresses, link up, routes). Needs root / CAP_NET_ADMIN.
	KernelTUN Mode = iota + 1
	// Userspace puts the device on an in-process gVisor netstack. No
	// privileges needed and no host changes; use Device.Net or
	// Device.ServeSOCKS5 to reach the mesh.
	Userspace
)

// String returns the mode's name.
func (m Mode) String() string {
	switch m {
	case KernelTUN:
		return "kernel-tun"
	case Userspace:
		return "userspace"
	default:
		return fmt.Sprintf("wgdev.Mode(%d)", int(m))
	}
}

// DefaultMTU is the MTU used when Config.MTU is 0.
const DefaultMTU = 1420

// Config describes a device to Open.
type Config struct {
	// Mode is KernelTUN or Userspace; the zero value is invalid.
	Mode Mode

	// InterfaceName is the kernel interface name (e.g. "cm0"), required in
	// KernelTUN mode. In Userspace mode it is only used to name the UAPI
	// socket when UAPI is set.
	InterfaceName string

	// Addresses are this node's overlay addresses, e.g. 100.80.0.5/32 and
	// fd7a:..::5/128. In KernelTUN mode they are added to the interface; in
	// Userspace mode the netstack owns their addresses (the prefix length
	// is ignored). At least one is required.
	Addresses []netip.Prefix

	// OverlayRoutes are routed into the interface in KernelTUN mode (e.g.
	// 100.80.0.0/16). Unused in Userspace mode, where the netstack routes
	// everything into the tunnel.
	OverlayRoutes []netip.Prefix

	// ListenPort is the UDP port to listen on; 0 picks a random one (see
	// Device.ListenPort).
	ListenPort int

	// MTU of the tunnel; 0 means DefaultMTU.
	MTU int

	// PrivateKey is the device's WireGuard private key; required.
	PrivateKey PrivateKey

	// Logger receives wireguard-go's messages at debug level; nil discards.
	Logger *slog.Logger

	// UAPI opens the standard UAPI socket
	// (/var/run/wireguard/<InterfaceName>.sock) so that wg(8) can inspect
	// and configure the device. Requires InterfaceName (and root).
	UAPI bool

	// Handshakes bounds what is sent to destinations that have not
	// answered (the zero value: the defaults of HandshakeLimit).
	Handshakes HandshakeLimit `json:"-"`

	// WrapTUN, if set, is given the TUN device (kernel or netstack) before
	// wireguard-go takes it, and wireguard-go uses what it returns: the
	// agent's packet filter sits there and sees every packet.
	WrapTUN func(tun.Device) tun.Device `json:"-"`

	// WrapBind, if set, is given the device's UDP bind (conn.NewDefaultBind)
	// and the device uses what it returns, under the handshake limiter: the
	// path layer (agent/path) shares the socket there, and the limiter
	// still sees every WireGuard packet.
	WrapBind func(conn.Bind) conn.Bind `json:"-"`
}

// withDefaults validates c and returns a copy with defaults filled in.
func (c Config) withDefaults() (Config, error) {
	switch c.Mode {
	case KernelTUN, Userspace:
	default:
		return c, fmt.Errorf("invalid mode %v", c.Mode)
	}
	if c.Mode == KernelTUN || c.UAPI || c.InterfaceName != "" {
		if err := validInterfaceName(c.InterfaceName); err != nil {
			return c, err
		}
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < 576 || c.MTU > 65535 {
		return c, fmt.Errorf("MTU %d out of range [576, 65535]", c.MTU)
	}
	if c.ListenPort < 0 || c.ListenPort > 65535 {
		return c, fmt.Errorf("listen port %d out of range", c.ListenPort)
	}
	if c.PrivateKey.IsZero() {
		return c, errors.New("private key is not set")
	}
	if len(c.Addresses) == 0 {
		return c, errors.New("no overlay addresses")
	}
	seen := make(map[netip.Addr]bool)
	for _, p := range c.Addresses {
		if !p.IsValid() {
			return c, fmt.Errorf("invalid overlay address %v", p)
		}
		if seen[p.Addr()] {
			return c, fmt.Errorf("duplicate overlay address %v", p.Addr())
		}
		seen[p.Addr()] = true
	}
	for _, p := range c.OverlayRoutes {
		if !p.IsValid() {
			return c, fmt.Errorf("invalid overlay route %v", p)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// validInterfaceName checks a Linux interface name (IFNAMSIZ-1 bytes, no
// '/', ':' or whitespace) which also becomes a UAPI socket file name.
func validInterfaceName(name string) error {
	if name == "" {
		return errors.New("interface name is required")
	}
	if len(name) > 15 || name == "." || name == ".." ||
		strings.ContainsAny(name, "/: \t\n\x00") {
		return fmt.Errorf("invalid interface name %q", name)
	}
	return nil
}
