package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/e2e"
)

func TestPercentile(t *testing.T) {
	v := []float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}
	for _, c := range []struct{ p, want float64 }{{50, 5}, {90, 9}, {100, 10}, {1, 1}} {
		if got := percentile(v, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile([]float64{3, 1}, 90); got != 3 {
		t.Errorf("p90 of two = %v, want the larger", got)
	}
	if got := percentile(nil, 90); got != 0 {
		t.Errorf("p90 of none = %v", got)
	}
}

// TestRequiredPath: the matrix issue 14 requires, spelled out.
func TestRequiredPath(t *testing.T) {
	direct := map[[2]e2e.Placement]bool{
		{e2e.Public, e2e.Public}: true, {e2e.Public, e2e.EIMNAT}: true, {e2e.EIMNAT, e2e.EIMNAT}: true,
		{e2e.Public, e2e.SymmetricNAT}: true,
	}
	for _, a := range e2e.Placements {
		for _, b := range e2e.Placements {
			want := "relay"
			if direct[[2]e2e.Placement{a, b}] || direct[[2]e2e.Placement{b, a}] {
				want = "direct"
			}
			if got := requiredPath(a, b); got != want {
				t.Errorf("%s ↔ %s: %s, want %s", a, b, got, want)
			}
		}
	}
}

func TestVerdict(t *testing.T) {
	s := func(v ...float64) []float64 { return v }
	for _, c := range []struct {
		v    []float64
		n    int
		want string
	}{
		{s(1, 1, 1.5, 1.9), 4, "**met**"},
		{s(1, 1, 1, 1, 1, 1, 1, 1, 5, 5), 10, "**median met, p90 not**"},
		{s(5, 5, 1), 3, "**not met**"},
		{s(1, 1), 3, "1 of 3 runs not within 1m0s"},
	} {
		if got := verdict(c.v, c.n, 2*time.Second); !strings.Contains(got, c.want) {
			t.Errorf("verdict(%v, %d) = %q, want %q", c.v, c.n, got, c.want)
		}
	}
}

// TestNATPathsMarkdown renders a whole section: the goals' verdicts, the
// handshake-retry note, a matrix cell off its path, the relay's ratio.
func TestNATPathsMarkdown(t *testing.T) {
	r := &NATPaths{At: time.Now(), Reps: 2, Load: [2]string{"1 2 3", "4 5 6"}}
	for _, sc := range connectScenarios {
		c := &ConnectResult{Scenario: sc}
		for range 2 {
			run := ConnectRun{First: 100 * time.Millisecond, BothWays: 120 * time.Millisecond, Settled: 300 * time.Millisecond, Path: [2]string{sc.Want, sc.Want}}
			switch sc.At {
			case e2e.EIMNAT: // one handshake retry
				run.First, run.BothWays = 5010*time.Millisecond, 5020*time.Millisecond
			case e2e.UDPBlocked: // four, just before the fourth's timer
				run.First, run.BothWays = 19800*time.Millisecond, 19900*time.Millisecond
			}
			c.Runs = append(c.Runs, run)
		}
		r.Connect = append(r.Connect, c)
	}
	r.Matrix = &Matrix{Reached: time.Second, Views: map[[2]e2e.Placement]map[string]int{
		{e2e.EIMNAT, e2e.EIMNAT}: {"direct": 1, "relay": 1},
	}}
	for _, sc := range connectScenarios {
		mbps := 1000.0
		if sc.Want == "relay" {
			mbps = 100
		}
		run := &IPerf{BitsPerSecond: mbps * 1e6, Transfer: 10 * time.Second, TunnelCPU: time.Second, Retransmits: 7}
		r.TP = append(r.TP, &RelayTP{Scenario: sc, PathResult: &PathResult{Path: &Path{Title: sc.Title, MTU: 1420}, Runs: []*IPerf{run}},
			RelayCPU: []time.Duration{time.Second}, Seen: []string{sc.Want}})
	}
	r.Roam = &Roaming{Laptop: "meim1", Peers: []string{"mpub1 (public)"},
		Runs: []RoamRun{{Recovery: [][2]time.Duration{{time.Second, 2 * time.Second}}, Path: []string{"direct"}}}}
	var b strings.Builder
	r.markdown(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) })
	md := b.String()
	for _, want := range []string{
		pathsHeading + "\n",
		"-only paths",
		"| public ↔ public | direct | 100 ms / 100 ms / 100 ms | **120 ms / 120 ms / 120 ms** |",
		"| EIM NAT ↔ EIM NAT (hole punched) | direct | 5.01 s / 5.01 s / 5.01 s | **5.02 s / 5.02 s / 5.02 s** | 300 ms",
		"**Why pairs miss the goal:** in 4 of 8 runs",
		"In 2 run(s) of UDP blocked ↔ UDP blocked (relay, TLS over TCP) even the retries",
		"direct 1, relay 1 (want direct) ✗",
		"/ direct: throughput 0.10** (goal ≥ 0.8: **not met**)",
		"**Why the relay misses the goal:**",
		"| mpub1 (public) | 1 of 1 | **2.00 s / 2.00 s / 2.00 s** |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("section lacks %q:\n%s", want, md)
		}
	}
}
