//go:build linux

package sockbuf

import (
	"net"
	"testing"
)

// TestSetGrowsTheReceiveBuffer: a UDP socket gets more than the kernel's
// default (212,992 bytes on Linux; reported doubled).
func TestSetGrowsTheReceiveBuffer(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := Set(c); got <= 2*212992 {
		t.Fatalf("receive buffer %d bytes after Set, want more than the default", got)
	}
}
