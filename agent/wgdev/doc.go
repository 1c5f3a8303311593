// Package wgdev is the certmesh agent's data plane: a WireGuard interface
// driven by wireguard-go in userspace.
//
// Two modes are supported. In [KernelTUN] mode the device sits on a real
// kernel TUN interface (root or CAP_NET_ADMIN required): the interface gets
// the node's overlay addresses and routes for the overlay ranges, and can
// optionally expose the standard UAPI socket so that wg(8) works. In
// [Userspace] mode the device sits on a gVisor netstack: no privileges are
// needed, nothing changes on the host, and the mesh is reached through
// [Device.Net] or the SOCKS5 proxy of [Device.ServeSOCKS5].
//
// Peers are only ever added through [Device.UpsertPeer]; deciding whether a
// peer may be added (certificate verification) is the caller's job.
//
// The device's private key is a [PrivateKey], which redacts itself in every
// formatting and logging path. The package never logs wireguard-go's IpcGet
// output and never returns its private_key line.
package wgdev
