package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/certmesh/certmesh/tstest/netns"
)

// userHZ is the unit of utime and stime in /proc/PID/stat (USER_HZ, 100
// on every Linux architecture's ABI).
const userHZ = 100

// ParseProcStatCPU returns utime+stime (all threads, in USER_HZ ticks)
// from the contents of /proc/PID/stat.
func ParseProcStatCPU(stat string) (uint64, error) {
	// The command name (field 2) is in parentheses and may itself contain
	// spaces and parentheses: the fields we want come after the last ')'.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("/proc/PID/stat: no ')' after the command name")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/PID/stat: %d fields after the command name, want at least 13", len(f))
	}
	utime, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/PID/stat: utime: %w", err)
	}
	stime, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/PID/stat: stime: %w", err)
	}
	return utime + stime, nil
}

// cpuTime returns the CPU time used so far by the processes (user and
// system, all threads).
func cpuTime(procs []*netns.Process) (time.Duration, error) {
	var ticks uint64
	for _, p := range procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
		if err != nil {
			return 0, fmt.Errorf("tunnel process on %s: %w", p.Host.Name, err)
		}
		t, err := ParseProcStatCPU(string(b))
		if err != nil {
			return 0, err
		}
		ticks += t
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// checkComm makes sure p's pid is the program itself, not a wrapper
// ("ip netns exec" execs the program in place), so that its CPU time is
// the tunnel's.
func checkComm(p *netns.Process, want string) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.Pid()))
	if err != nil {
		return err
	}
	got := strings.TrimSpace(string(b))
	// comm is truncated to 15 bytes.
	if len(want) > 15 {
		want = want[:15]
	}
	if got != want {
		return fmt.Errorf("process %d on %s is %q, want %q: cannot account its CPU time", p.Pid(), p.Host.Name, got, want)
	}
	return nil
}
