//go:build unix

package filter

import "syscall"

// cpuTime is the process's user+system CPU time in nanoseconds, so that the
// benchmarks can report CPU cost per packet on a machine that is busy with
// other work (where wall time per packet overstates it).
func cpuTime() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
