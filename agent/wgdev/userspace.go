package wgdev

import (
	"fmt"
	"net/netip"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"
)

// createNetstack creates the gVisor netstack TUN owning cfg.Addresses.
// It has no DNS servers: names cannot be resolved inside the mesh.
func createNetstack(cfg Config) (tun.Device, *netstack.Net, error) {
	addrs := make([]netip.Addr, 0, len(cfg.Addresses))
	for _, p := range cfg.Addresses {
		addrs = append(addrs, p.Addr().Unmap())
	}
	tdev, tnet, err := netstack.CreateNetTUN(addrs, nil, cfg.MTU)
	if err != nil {
		return nil, nil, fmt.Errorf("creating netstack TUN: %w", err)
	}
	return tdev, tnet, nil
}

// newBind returns the UDP transport for the device. In both modes it uses
// real host UDP sockets on the listen port.
func newBind() conn.Bind { return conn.NewDefaultBind() }
