package udpbatch

import (
	"encoding/binary"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	gsoSupported = true
	msgTrunc     = unix.MSG_TRUNC
)

var oobSize = unix.CmsgSpace(4)

func enableGRO(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = rc.Control(func(fd uintptr) {
		ok = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
	})
	return ok
}

// groSize is the segment size of a coalesced datagram (0: not coalesced).
func groSize(oob []byte) int {
	if len(oob) == 0 {
		return 0
	}
	cms, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, m := range cms {
		if m.Header.Level != unix.IPPROTO_UDP || m.Header.Type != unix.UDP_GRO {
			continue
		}
		switch {
		case len(m.Data) >= 4:
			return int(binary.NativeEndian.Uint32(m.Data))
		case len(m.Data) >= 2:
			return int(binary.NativeEndian.Uint16(m.Data))
		}
	}
	return 0
}

// gsoControl is the UDP_SEGMENT control message for segments of size.
func gsoControl(size int) []byte {
	b := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], uint16(size))
	return b
}
