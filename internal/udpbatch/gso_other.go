//go:build !linux

package udpbatch

import "net"

const (
	gsoSupported = false
	msgTrunc     = 0x20 // MSG_TRUNC on the BSDs and macOS
	oobSize      = 0
)

func enableGRO(*net.UDPConn) bool { return false }
func groSize([]byte) int          { return 0 }
func gsoControl(int) []byte       { return nil }
