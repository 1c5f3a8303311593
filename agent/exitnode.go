package agent

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
	"golang.org/x/sys/unix"
)

// Exit node (--exit-node): all traffic goes through one peer certified
// for the default routes. The default routes are in the tunnel's table
// from the start and stay there whatever becomes of the peer (unreachable,
// revoked, not listed): with no peer holding them WireGuard drops what is
// sent, so nothing leaves the host outside the tunnel. The agent's own
// connections (CA, coordinator, and WireGuard's UDP) carry the device's
// fwmark and bypass the tunnel's table; a relay allocation and resolver
// forwarding do not and go through the exit node.

// exitRoutes are the default routes.
var exitRoutes = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// exitWanted reports whether id is the exit node asked for (by device ID
// or hostname).
func exitWanted(want string, id certs.Identity) bool {
	return want != "" && (string(id.DeviceID) == want || string(id.Hostname) == want)
}

// markOwn makes api's connections carry the device's fwmark when an exit
// node is in use, so that they reach the server over the underlay.
func (a *Agent) markOwn(api *apiClient) {
	if a.cfg.ExitNode != "" {
		api.rt.control = markSocket
	}
}

func markSocket(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, wgdev.WireGuardMark)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("marking a socket to bypass the exit node: %w", serr)
	}
	return nil
}

// hostSubnets are the subnets of the host's interfaces other than the
// tunnel (--exit-node-allow-lan keeps them direct).
func hostSubnets(skip string) ([]netip.Prefix, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	var out []netip.Prefix
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || ifc.Name == skip {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, ad := range addrs {
			ipn, ok := ad.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			ones, _ := ipn.Mask.Size()
			if !ok || ip.Unmap().IsLinkLocalUnicast() {
				continue
			}
			ip = ip.Unmap()
			if ip.Is4() && ones > 32 {
				ones -= 96
			}
			out = append(out, netip.PrefixFrom(ip, ones).Masked())
		}
	}
	return out, nil
}

// startExit installs the default routes into the tunnel (and, with
// allowLAN, keeps the host's subnets direct) before any peer is known.
func (a *Agent) startExit(s *routeStage) error {
	if a.cfg.ExitNode == "" {
		return nil
	}
	s.exit = a.cfg.ExitNode
	if a.cfg.ExitNodeAllowLAN {
		lans, err := hostSubnets(a.dev.InterfaceName())
		if err != nil {
			return err
		}
		for _, p := range lans {
			if err := a.dev.BypassRoute(p); err != nil {
				return err
			}
		}
		a.cfg.Logger.Info("exit node: the host's own subnets stay direct", "subnets", lans)
	}
	for _, r := range exitRoutes {
		if err := s.kernel.AddRoute(r); err != nil {
			return fmt.Errorf("exit node: %w", err)
		}
		s.installed[r] = true
	}
	a.cfg.Logger.Info("exit node: all traffic goes into the tunnel", "exit_node", a.cfg.ExitNode)
	return nil
}
