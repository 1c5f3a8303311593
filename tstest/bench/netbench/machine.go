package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Machine describes where the figures were measured.
type Machine struct {
	CPUModel   string
	CPUs       int // logical CPUs in /proc/cpuinfo
	Usable     int // CPUs this process may run on (runtime.NumCPU)
	MemTotal   string
	Kernel     string // uname -r
	GoVersion  string
	LoadBefore string // /proc/loadavg before and after the run
	LoadAfter  string
	IPerf3     string // iperf3 --version, first line
	WireGuard  string // golang.zx2c4.com/wireguard module version
}

// ParseCPUInfo returns the first "model name" of /proc/cpuinfo and the
// number of "processor" entries.
func ParseCPUInfo(r io.Reader) (model string, n int) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "processor":
			n++
		case "model name":
			if model == "" {
				model = strings.TrimSpace(v)
			}
		}
	}
	return model, n
}

func readMachine(ctx context.Context, goCmd, moduleDir string) Machine {
	m := Machine{Usable: runtime.NumCPU(), GoVersion: runtime.Version(), CPUModel: "unknown"}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		model, n := ParseCPUInfo(f)
		f.Close()
		if model != "" {
			m.CPUModel = model
		}
		m.CPUs = n
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if f := strings.Fields(v); len(f) > 0 {
					if kb, err := strconv.ParseFloat(f[0], 64); err == nil {
						m.MemTotal = strconv.FormatFloat(kb/(1<<20), 'f', 1, 64) + " GiB"
					}
				}
			}
		}
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if out, err := exec.CommandContext(ctx, goCmd, "env", "GOVERSION").Output(); err == nil {
		if v := strings.TrimSpace(string(out)); v != "" && v != m.GoVersion {
			m.GoVersion += " (go command: " + v + ")"
		}
	}
	if out, err := exec.CommandContext(ctx, "iperf3", "--version").Output(); err == nil {
		m.IPerf3, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
		m.IPerf3, _, _ = strings.Cut(m.IPerf3, " (")
	}
	cmd := exec.CommandContext(ctx, goCmd, "list", "-m", "golang.zx2c4.com/wireguard")
	cmd.Dir = moduleDir
	if out, err := cmd.Output(); err == nil {
		m.WireGuard = strings.TrimSpace(string(out))
	}
	m.LoadBefore = loadAvg()
	return m
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
