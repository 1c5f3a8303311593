package main

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/certmesh/certmesh/tstest/e2e"
)

// seconds converts durations to seconds, for the statistics.
func seconds(ds []time.Duration) []float64 {
	var v []float64
	for _, d := range ds {
		v = append(v, d.Seconds())
	}
	return v
}

// spread formats the median, p90 and max of v (seconds) as "1.23 s / 1.50 s / 2.00 s".
func spread(v []float64) string {
	if len(v) == 0 {
		return "—"
	}
	return fmtSec(median(v)) + " / " + fmtSec(percentile(v, 90)) + " / " + fmtSec(slices.Max(v))
}

// fmtSec formats v seconds: in milliseconds below one second. A negative
// v (a first packet seen before the admission it follows, which the 5 ms
// polling of the statuses saw late) shows as 0.
func fmtSec(v float64) string {
	if v < 1 {
		v = max(v, 0)
		return fmt.Sprintf("%.0f ms", v*1000)
	}
	return fmt.Sprintf("%.2f s", v)
}

// fmtDur is fmtSec of d.
func fmtDur(d time.Duration) string { return fmtSec(d.Seconds()) }

// verdict judges v (seconds) against goal: on the median and on the p90.
func verdict(v []float64, n int, goal time.Duration) string {
	g := goal.Seconds()
	switch {
	case len(v) < n:
		return fmt.Sprintf("**not met** (%d of %d runs not within %s)", n-len(v), n, natDeadline)
	case percentile(v, 90) <= g:
		return "**met** (median and p90)"
	case median(v) <= g:
		return "**median met, p90 not**"
	}
	return "**not met**"
}

// markdown writes the section.
func (r *NATPaths) markdown(p func(string, ...any)) {
	p("%s\n\n", pathsHeading)
	p("Measured on %s UTC (%s).", r.At.UTC().Format("2006-01-02 15:04"), r.Elapsed.Round(time.Second))
	if r.Load[0] != "" {
		p(" Run on its own with `go run ./tstest/bench/netbench -only paths`, which replaces only this section; the machine is the one above, load average (1/5/15 min) %s before, %s after.", r.Load[0], r.Load[1])
	}
	p(" certmesh-server (its embedded STUN responder and TURN relay, default settings) and kernel-mode agents, the real binaries, each in its own network namespace; ")
	p("a NATed agent sits alone behind a router of its own (nftables): **EIM NAT** maps endpoint-independently (port-preserving masquerade, a home router), ")
	p("**symmetric NAT** picks a random port per flow (a carrier-grade NAT), **UDP blocked** is an EIM router that drops UDP from its LAN (TCP passes); ")
	p("**public** agents sit on the server's segment. Every agent asks the embedded STUN responder for its public address (`--stun`). ")
	p("Goals (issue 14): direct within %s, relay within %s, roaming within %s, relay throughput ≥ %.1f × direct.\n\n", goalDirect, goalRelay, goalRoam, goalRelayTP)

	r.connectMarkdown(p)
	r.Matrix.markdown(p)
	r.tpMarkdown(p)
	r.Roam.markdown(p)
}

func (r *NATPaths) connectMarkdown(p func(string, ...any)) {
	p("### Time from both agents admitted to the first packet\n\n")
	p("%d repetitions per pair, interleaved (the order rotating), each on two fresh hosts behind fresh routers with two freshly enrolled agents: ", r.Reps)
	p("the first agent runs, the second starts; both agents' local APIs are polled every 5 ms, and the clock starts when the later of the two lists the other as a verified peer (admitted: certificate verified, peer configured, probing started). ")
	p("From the moment the second agent has its overlay address, a numbered datagram crosses the tunnel every %s each way; ", natEvery)
	p("first packet is the first datagram from the first agent to arrive, both ways the later of the first datagram in each direction (what a TCP connection needs), ")
	p("required path when both statuses show the path issue 14 requires. Each pair is stopped and revoked after its run. ")
	p("Cells: median / p90 / max (the 5 ms polling makes anything under 5 ms read as about 0); the verdict is on both ways.\n\n")
	p("| pair | required path | admitted → first packet | admitted → both ways | admitted → required path in status | path at the end (both sides) | goal | verdict |\n")
	p("|---|---|--:|--:|--:|---|--:|---|\n")
	var late int
	for _, c := range r.Connect {
		var first, both, settled []time.Duration
		paths := map[string]int{}
		for _, x := range c.Runs {
			if !x.Never {
				first, both = append(first, x.First), append(both, x.BothWays)
			}
			if x.Settled > 0 {
				settled = append(settled, x.Settled)
			}
			paths[x.Path[0]+"/"+x.Path[1]]++
			if x.Late {
				late++
			}
		}
		s := c.Scenario
		p("| %s | %s | %s | **%s** | %s | %s | %s | %s |\n", s.Title, s.Want, spread(seconds(first)), spread(seconds(both)),
			spread(seconds(settled)), counts(paths), s.Goal, verdict(seconds(both), len(c.Runs), s.Goal))
	}
	p("\n")
	if late > 0 {
		p("In %d run(s) the datagram streams started only after both agents were admitted (the second agent's overlay address appeared late): there, the first packet is measured from admission but could not have come sooner than the streams.\n\n", late)
	}
	r.rekeyNote(p)
	p("<details><summary>Every run (second agent started → both admitted; admitted → first packet, both ways, required path in status)</summary>\n\n")
	p("| rep |")
	for _, c := range r.Connect {
		p(" %s |", c.Scenario.Title)
	}
	p("\n|--:|%s\n", strings.Repeat("--:|", len(r.Connect)))
	for i := range r.Reps {
		p("| %d |", i+1)
		for _, c := range r.Connect {
			if i >= len(c.Runs) {
				p(" – |")
				continue
			}
			x := c.Runs[i]
			settled := "never"
			if x.Settled > 0 {
				settled = fmtDur(x.Settled)
			}
			if x.Never {
				p(" %s; no packet within %s, %s |", fmtDur(x.Admit), natDeadline, settled)
				continue
			}
			p(" %s; %s, %s, %s |", fmtDur(x.Admit), fmtDur(x.First), fmtDur(x.BothWays), settled)
		}
		p("\n")
	}
	p("\n</details>\n\n")
}

// wgRetry is wireguard-go's handshake retransmission interval
// (REKEY_TIMEOUT); each retry adds up to 333 ms of jitter.
const wgRetry = 5 * time.Second

// rekeyNote explains first packets that waited for a handshake retry: the
// path was in status long before the packet, which came just past a
// multiple of wgRetry.
func (r *NATPaths) rekeyNote(p func(string, ...any)) {
	n, of := 0, 0
	var lag []time.Duration
	multi := map[string]int{}
	for _, c := range r.Connect {
		for _, x := range c.Runs {
			if x.Never {
				continue
			}
			of++
			k := (x.BothWays + wgRetry/2) / wgRetry // the nearest multiple
			off := x.BothWays - k*wgRetry
			if k < 1 || off < -400*time.Millisecond || off > 400*time.Millisecond || x.Settled == 0 || x.BothWays-x.Settled < wgRetry/2 {
				continue
			}
			n++
			lag = append(lag, x.Settled)
			if k >= 2 {
				multi[c.Scenario.Title]++
			}
		}
	}
	if n == 0 {
		return
	}
	p("**Why pairs miss the goal:** in %d of %d runs both statuses showed the required path after %s (median) but the first packet came only within 400 ms of a multiple of %s, ",
		n, of, fmtSec(median(seconds(lag))), wgRetry)
	p("the interval at which wireguard-go sends a handshake initiation again (REKEY_TIMEOUT, plus up to 333 ms of jitter). ")
	p("The tunnel's first packet sets off a handshake the moment the peer is configured, before the path layer has found a path, towards a first guess that may not answer; ")
	p("wireguard-go then makes no other initiation for 5 s. The path layer sends that initiation again along the path it finds (agent/path/initiation.go, by the side with the lower key), ")
	p("which removes the wait where it works; in these runs the handshake still waited for a retry: the resent initiation, or its answer, was lost or did not match wireguard-go's state any more (not yet established which)")
	if median(seconds(lag)) <= goalDirect.Seconds() {
		p("; the paths themselves are found within the goals")
	}
	p(".")
	if len(multi) > 0 {
		var in []string
		for title, k := range multi {
			in = append(in, fmt.Sprintf("%d run(s) of %s", k, title))
		}
		slices.Sort(in)
		p(" In %s even the retries after the path was in status were lost, %s or more in all: that path did not carry WireGuard's handshake yet when status showed it.", strings.Join(in, ", "), 2*wgRetry)
	}
	p("\n\n")
}

// counts formats a tally as "direct/direct ×9, relay/relay ×1".
func counts(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return m[b] - m[a] })
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(out, ", ")
}

func (r *NATPaths) tpMarkdown(p func(string, ...any)) {
	p("### TCP throughput and CPU through the relay against direct\n\n")
	p("Between the matrix's two agents at the same placement (so both ends of every pair sit behind a router of the same kind), while the other agents stay up: ")
	p("iperf3, one TCP stream, the same runs and rounds as the data-plane section (interleaved, the order rotating; the median is shown). ")
	p("Agents CPU per GB is both agents' CPU time during each run, relay CPU per GB certmesh-server's (it relays; on a direct path it is the server's idle cost), per gigabyte carried. ")
	p("The ratios are against the EIM NAT direct pair, which crosses two NAT routers as the relayed pairs do.")
	if r.TPOnly {
		p(" Measured on %s UTC (%s), on its own with `go run ./tstest/bench/netbench -only relay-throughput`, which replaces only this subsection (the rest of this section is from the run above); the matrix's agents were started afresh for it; load average (1/5/15 min) %s before, %s after.",
			r.At.UTC().Format("2006-01-02 15:04"), r.Elapsed.Round(time.Second), r.Load[0], r.Load[1])
	}
	p("\n\n")
	var base *RelayTP
	for _, t := range r.TP {
		if t.Scenario.At == e2e.EIMNAT {
			base = t
		}
	}
	p("| pair | path (status before each run) | MTU | TCP throughput (median) | min – max | × direct (EIM) | agents CPU per GB | relay CPU per GB | total CPU per GB | total × direct (EIM) | retransmits (median) |\n")
	p("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	total := func(t *RelayTP) float64 { return t.MedianCPUPerGB() + t.RelayCPUPerGB() }
	var missed []*RelayTP
	for _, t := range r.TP {
		lo, hi := minMax(t.Mbps())
		seen := map[string]int{}
		for i := range t.Runs {
			seen[t.Seen[i]]++
		}
		p("| %s | %s | %d | %s Mbit/s | %s – %s | %s | %s ms | %s ms | %s ms | %s | %s |\n", t.Scenario.Title, counts(seen), t.Path.MTU,
			num(t.MedianMbps()), num(lo), num(hi), rat(t.MedianMbps(), base.MedianMbps()),
			num(t.MedianCPUPerGB()), num(t.RelayCPUPerGB()), num(total(t)), rat(total(t), total(base)), num(t.medianRetransmits()))
	}
	p("\n")
	for _, t := range r.TP {
		if t.Scenario.Want != "relay" {
			continue
		}
		tr := ratio(t.MedianMbps(), base.MedianMbps())
		v := "**met**"
		if tr < goalRelayTP {
			v = "**not met**"
		}
		p("**%s / direct: throughput %.2f** (goal ≥ %.1f: %s), CPU per GB (agents and relay) %.2f. ", t.Scenario.Title, tr, goalRelayTP, v, ratio(total(t), total(base)))
		if tr < goalRelayTP {
			missed = append(missed, t)
		}
	}
	p("\n\n")
	if len(missed) > 0 {
		m := missed[0]
		tot := ratio(total(m), total(base))
		p("**Why the relay misses the goal:** on this machine the relayed path is limited by CPU, as the direct one is: per gigabyte it costs the agents %s × the CPU time of the direct pair and the relay (certmesh-server) another %s ms, %s × the direct pair's total, ",
			rat(m.MedianCPUPerGB(), base.MedianCPUPerGB()), num(m.RelayCPUPerGB()), rat(total(m), total(base)))
		p("and the %d CPUs run both ends, the relay and iperf3 at once, so a relayed stream can carry about 1/%.2f = %.2f of the direct one (measured: %.2f); ", runtime.NumCPU(), tot, 1/tot, ratio(m.MedianMbps(), base.MedianMbps()))
		p("0.8 would need the relay's work and the agents' extra work per gigabyte under a quarter of the direct pair's. TCP retransmitted %s segments per run through it (median; %s directly). ",
			num(m.medianRetransmits()), num(base.medianRetransmits()))
		p("The relayed I/O is batched as the direct path's is (the agents send wireguard-go's batches as ChannelData in one sendmmsg with UDP GSO, or one TLS write, and read with recvmmsg and UDP GRO; the relay reads with recvmmsg and GRO, hands datagrams between its own allocations in memory, and sends each allocation's ChannelData to its client together, with GSO or in one TLS write); ")
		p("what is left is the extra hop itself: every datagram crosses the network stack into and out of certmesh-server (behind NAT, through a router twice as often), and pion/turn handles each one in user space (an allocation and channel lookup, a copy, a ChannelData encoding that allocates), which a direct path does not do at all.\n\n")
	}
}
