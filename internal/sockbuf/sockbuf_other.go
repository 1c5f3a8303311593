//go:build !linux

package sockbuf

func set(int) int { return 0 }
