//go:build !unix

package filter

func cpuTime() int64 { return 0 }
