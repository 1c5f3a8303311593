//go:build !linux

package udpbatch

const msgTrunc = 0x20 // MSG_TRUNC on the BSDs and macOS
