// Package sockbuf sizes the socket buffers of the relay's and the relay
// client's sockets as wireguard-go sizes its own: a relayed WireGuard
// path takes bursts of a whole batch (up to 128 datagrams) at once, which
// the kernel's default buffer (about 200 KiB, some 90 full-size datagrams)
// cannot hold, so the burst's tail would be dropped before anyone reads it.
package sockbuf

import "syscall"

// Size is the receive and send buffer asked for (wireguard-go's).
const Size = 7 << 20

// Set asks for Size bytes of receive and send buffer on c (a *net.UDPConn
// or *net.TCPConn): up to the system's maximum (net.core.rmem_max,
// wmem_max), and beyond it where the process may (CAP_NET_ADMIN). It
// returns the receive buffer the kernel granted (0 if it cannot tell);
// failing to enlarge a buffer is not an error (the socket still works,
// only slower under load).
func Set(c syscall.Conn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	got := 0
	_ = rc.Control(func(fd uintptr) { got = set(int(fd)) })
	return got
}
