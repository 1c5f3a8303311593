package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/certmesh/certmesh/tstest/e2e"
)

// TargetRatio is the throughput certmesh must reach relative to bare
// wireguard-go (issue 2).
const TargetRatio = 0.95

// PathResult is what was measured over one path.
type PathResult struct {
	Path *Path
	Runs []*IPerf // one per round, in round order
	Ping *e2e.PingResult
	// For the certmesh paths: the policy version published before each
	// measurement (ping, warm-up, every round), how long after publish
	// both agents held it, and, per round, how many flows the policy's
	// last rule accepted on the server's agent during the iperf3 run.
	Versions      []uint64
	InstallWaits  []time.Duration
	LastRuleFlows []uint64
}

// Mbps returns the throughput of every run in Mbit/s.
func (r *PathResult) Mbps() []float64 {
	var v []float64
	for _, x := range r.Runs {
		v = append(v, x.BitsPerSecond/1e6)
	}
	return v
}

// MedianMbps is the median throughput in Mbit/s.
func (r *PathResult) MedianMbps() float64 { return median(r.Mbps()) }

// MedianCPUPerGB is the median tunnel CPU time per GB in milliseconds
// (0 for the plain veth).
func (r *PathResult) MedianCPUPerGB() float64 {
	var v []float64
	for _, x := range r.Runs {
		if c := x.TunnelCPUPerGB(); c > 0 {
			v = append(v, ms(c))
		}
	}
	return median(v)
}

// medianRetransmits is the median of the runs' TCP retransmits.
func (r *PathResult) medianRetransmits() float64 {
	var v []float64
	for _, x := range r.Runs {
		v = append(v, float64(x.Retransmits))
	}
	return median(v)
}

// MedianRTT and AvgRTT are the ping round-trip times in milliseconds.
func (r *PathResult) MedianRTT() float64 { return ms(r.Ping.Median()) }
func (r *PathResult) AvgRTT() float64    { return ms(r.Ping.Avg()) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Report is everything one run measured.
type Report struct {
	Command    string
	Start      time.Time
	Elapsed    time.Duration
	Opts       options
	Machine    Machine
	Paths      []*PathResult
	GoBenchCmd string
	GoBench    []GoBenchSummary
	Revocation *Revocation
	Faults     *Faults
	NAT        *NATPaths
}

func (rep *Report) path(key string) *PathResult {
	for _, p := range rep.Paths {
		if p.Path.Key == key {
			return p
		}
	}
	return nil
}

// PairedRatios returns, per round, certmesh's throughput over bare
// wireguard-go's in the same round.
func (rep *Report) PairedRatios() []float64 { return rep.Paired("certmesh", "wireguard-go", false) }

// PairedCPURatios returns, per round, certmesh's tunnel CPU time per GB
// over bare wireguard-go's in the same round.
func (rep *Report) PairedCPURatios() []float64 { return rep.Paired("certmesh", "wireguard-go", true) }

// Paired returns, per round, path a's throughput (or tunnel CPU time per
// GB, with cpu) over path b's in the same round.
func (rep *Report) Paired(a, b string, cpu bool) []float64 {
	pa, pb := rep.path(a), rep.path(b)
	if pa == nil || pb == nil {
		return nil
	}
	var v []float64
	for i := range min(len(pa.Runs), len(pb.Runs)) {
		if cpu {
			v = append(v, ratio(float64(pa.Runs[i].TunnelCPUPerGB()), float64(pb.Runs[i].TunnelCPUPerGB())))
		} else {
			v = append(v, ratio(pa.Runs[i].BitsPerSecond, pb.Runs[i].BitsPerSecond))
		}
	}
	return v
}

// goBenchInfo says what a known Go benchmark measures and what its rate
// counts.
var goBenchInfo = map[string]struct{ what, unit string }{
	"BenchmarkParse1000Rules":                              {"`policy.Parse` of a 1,000-rule policy (HuJSON, checks, positions): what publishing and every agent do once per version", "policies/s"},
	"BenchmarkCompile1000Rules":                            {"`Policy.Compile` of the same: the per-version work of an agent before it installs a policy", "policies/s"},
	"BenchmarkDecide1000Rules/Compiled.Decide/accept-last": {"one decision against 1,000 rules for a peer only the last rule accepts, source and destination looked up", "decisions/s"},
	"BenchmarkDecide1000Rules/Node.Decide/accept-last":     {"the same with the node's side precomputed (what the agent's filter calls, once per new inbound flow)", "decisions/s"},
	"BenchmarkDecide1000Rules/Node.Decide/drop":            {"one decision against 1,000 rules for a peer no rule accepts", "decisions/s"},
	"BenchmarkDecide1000Rules/DecideFunc/drop":             {"the same through the filter's `DecideFunc` adapter", "decisions/s"},
	"BenchmarkWriteAccept/nofilter/batch=1":                {"inbound packets written to a no-op TUN device without the filter (the harness alone), one packet per write", "pkts/s"},
	"BenchmarkWriteAccept/nofilter/batch=128":              {"the same, 128 packets per write", "pkts/s"},
	"BenchmarkWriteAccept/established/batch=1":             {"the filter on inbound 1420-byte TCP packets of an established flow (the per-packet cost: decode, source check, connection-tracking lookup), one packet per write", "pkts/s"},
	"BenchmarkWriteAccept/established/batch=128":           {"the same, 128 packets per write (wireguard-go's batch size)", "pkts/s"},
	"BenchmarkWriteAccept/established/parallel":            {"the same from several goroutines at once, each its own flow (wireguard-go's per-peer receive goroutines)", "pkts/s"},
	"BenchmarkWriteAccept/newflow/batch=1":                 {"every packet a new TCP flow: a policy decision and a connection-tracking insertion per packet, one per write", "pkts/s"},
	"BenchmarkWriteAccept/newflow/batch=128":               {"the same, 128 packets per write", "pkts/s"},
	"BenchmarkWriteRouted/established/batch=128":           {"the filter on a subnet router: inbound packets of an established flow to a LAN host, 128 per write", "pkts/s"},
	"BenchmarkWriteRouted/newflow/batch=128":               {"the same, every packet a new flow: the served-prefix check (16 prefixes), the peer-address check and a decision per packet", "pkts/s"},
	"BenchmarkReadTrack":                                   {"outbound packets through the filter (tracking only), 128 per read", "pkts/s"},
	"BenchmarkDecode":                                      {"decoding one IPv6 TCP packet's headers", "packets/s"},
	"BenchmarkVerify/parsed":                               {"`certs.Verify` of a parsed bundle (chain to the pinned root, validity, name constraints, WireGuard key and address extensions)", "Verify/s"},
	"BenchmarkVerify/wire":                                 {"the same from the bytes a coordinator relays: `ParseBundle` + `Verify`", "Verify/s"},
	"BenchmarkIssueMachine":                                {"the CA's signing step: machine-certificate template from a CSR + ECDSA signature by the intermediate", "certificates issued/s"},
	"BenchmarkVerifyCRL/10k":                               {"`certs.VerifyCRL` of a new CRL of 10,000 entries (about 540 KB): signature, chain, parsing", "CRLs/s"},
	"BenchmarkVerifyCRL/10k-same":                          {"the CRL the agent already holds, received again byte for byte", "CRLs/s"},
	"BenchmarkVerifyCRL/10k-resigned":                      {"the held CRL's entries under a new signature", "CRLs/s"},
	"BenchmarkVerifyCRL/IsRevoked":                         {"one revocation lookup in a held 10,000-entry CRL", "lookups/s"},
	"BenchmarkEnroll":                                      {"a whole `CA.Enroll` without HTTP: nonce, CSR and WireGuard-key proofs, token redemption, address allocation, signing, storing", "certificates issued/s"},
	"BenchmarkEnroll/devices=0/revoked=0":                  {"a whole `CA.Enroll` without HTTP: nonce, CSR and WireGuard-key proofs, token redemption, key-reuse check, address allocation, signing, storing; empty store", "certificates issued/s"},
	"BenchmarkEnroll/devices=10000/revoked=0":              {"the same with 10,000 devices stored", "certificates issued/s"},
	"BenchmarkEnroll/devices=10000/revoked=500":            {"the same with 10,000 devices stored, 500 of them revoked", "certificates issued/s"},
	"BenchmarkRenew/devices=0/revoked=0":                   {"a whole `CA.Renew` without HTTP (a new WireGuard key each time); empty store", "certificates issued/s"},
	"BenchmarkRenew/devices=10000/revoked=0":               {"the same with 10,000 devices stored", "certificates issued/s"},
	"BenchmarkRenew/devices=10000/revoked=500":             {"the same with 10,000 devices stored, 500 of them revoked", "certificates issued/s"},
	"BenchmarkRevoke/devices=0/revoked=0":                  {"`CA.Revoke` of a device and the new CRL; empty store", "revocations/s"},
	"BenchmarkRevoke/devices=10000/revoked=0":              {"the same with 10,000 devices stored", "revocations/s"},
	"BenchmarkRevoke/devices=10000/revoked=500":            {"the same with 10,000 devices stored, 500 of them revoked (a CRL of 500 entries)", "revocations/s"},
}

// describeGoBench says what s measures; "+user" variants of a known
// benchmark verify a bundle that also carries a user certificate.
func describeGoBench(s GoBenchSummary) (info struct{ what, unit string }) {
	if i, ok := goBenchInfo[s.Name]; ok {
		return i
	}
	if base, ok := strings.CutSuffix(s.Name, "+user"); ok {
		if i, ok := goBenchInfo[base]; ok {
			i.what += ", with a user certificate bound to the same device key"
			return i
		}
	}
	info.what, info.unit = "package `"+s.Pkg+"`", "ops/s"
	return info
}

// goBenchRate is the rate column of s: its pkts/s metric when it reports
// one (an op of the packet filter's benchmarks is a batch of packets),
// otherwise one second over the median ns/op.
func goBenchRate(s GoBenchSummary) float64 {
	if v := s.MedianMetric("pkts/s"); v > 0 {
		return v
	}
	return s.PerSecond()
}

// goBenchCPUPerPkt is the median cpu-ns/pkt of s, or 0.
func goBenchCPUPerPkt(s GoBenchSummary) float64 { return s.MedianMetric("cpu-ns/pkt") }

// findGoBench returns the benchmark named name, if it ran.
func findGoBench(res []GoBenchSummary, name string) (GoBenchSummary, bool) {
	for _, s := range res {
		if s.Name == name {
			return s, true
		}
	}
	return GoBenchSummary{}, false
}

// Busy reports whether the machine had other work to do around the run:
// a load average above half its CPUs before the run (when nothing of ours
// ran) or, after it, above what the benchmark itself explains (it keeps
// at most about two CPUs busy).
func (rep *Report) Busy() bool {
	cpus := float64(max(rep.Machine.CPUs, 1))
	before, after := load1(rep.Machine.LoadBefore), load1(rep.Machine.LoadAfter)
	return before > cpus/2 || after > cpus+1
}

// load1 is the 1-minute figure of a "1 5 15" load average string.
func load1(s string) float64 {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// Markdown renders the report.
func (rep *Report) Markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	o := rep.Opts
	m := rep.Machine

	p("# certmesh benchmarks\n\n")
	p("Generated by `%s`", rep.Command)
	if rep.Command == "go run ./tstest/bench/netbench -out BENCHMARKS.md" {
		p(" (what `make bench` runs)")
	}
	p(" on %s; the run took %s. Do not edit by hand: run it again.\n\n",
		rep.Start.UTC().Format("2006-01-02 15:04 MST"), rep.Elapsed.Round(time.Second))

	p("## Machine\n\n")
	p("| | |\n|---|---|\n")
	cpus := fmt.Sprintf("%d logical CPUs", m.CPUs)
	if m.Usable != m.CPUs {
		cpus += fmt.Sprintf(" (%d usable by this process)", m.Usable)
	}
	p("| CPU | %s, %s |\n", m.CPUModel, cpus)
	if m.MemTotal != "" {
		p("| memory | %s |\n", m.MemTotal)
	}
	p("| kernel | `%s` |\n", m.Kernel)
	p("| Go | %s |\n", m.GoVersion)
	if m.WireGuard != "" {
		p("| wireguard-go | `%s` — the same module in the agent and in the bare binary |\n", m.WireGuard)
	}
	if m.IPerf3 != "" {
		p("| iperf3 | %s |\n", m.IPerf3)
	}
	p("| load average (1/5/15 min) | %s before, %s after |\n\n", m.LoadBefore, m.LoadAfter)
	if rep.Busy() {
		p("> **This machine was busy with other work during the run** (load average above; %d CPUs). ", m.CPUs)
		p("The absolute figures are lower and noisier than on an idle machine; the ratios, measured side by side, ")
		p("still compare like with like.\n\n")
	}

	p("## Data plane\n\n")
	p("Two network namespaces, each with a veth into the same bridge namespace; the client sends to the server ")
	p("over the plain veth, over bare upstream wireguard-go configured by hand with `wg` (the agents' own keys ")
	p("and overlay addresses, MTU %d, static endpoints), and through two certmesh agents on kernel TUN, ", BareMTU)
	p("once under a one-rule allow-all policy and once under a %s-rule policy (see below). ", num(LargePolicyRules))
	p("Throughput: iperf3, one TCP stream, %s per run", o.duration)
	if o.omit > 0 {
		p(" after leaving out the first %s", o.omit)
	}
	p(", %d run(s) per path, interleaved round by round; the median is shown. ", o.reps)
	p("Tunnel CPU per GB: user + system CPU time of the tunnel's two processes (the agents, or the two ")
	p("wireguard-go daemons) during each iperf3 run, from /proc/PID/stat, per gigabyte carried. ")
	p("Latency: %d pings %s apart on the idle path, before the throughput runs.\n\n", o.pings, o.pingInterval)

	veth, wg := rep.path("veth"), rep.path("wireguard-go")
	p("| path | MTU | TCP throughput (median) | min – max | × veth | × wireguard-go | tunnel CPU per GB (median) | CPU/GB × wireguard-go | retransmits (median) | RTT median | RTT avg | RTT × wireguard-go | ping loss |\n")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rep.Paths {
		lo, hi := minMax(r.Mbps())
		cpu := "—"
		if c := r.MedianCPUPerGB(); c > 0 {
			cpu = num(c) + " ms"
		}
		p("| %s | %d | %s Mbit/s | %s – %s | %s | %s | %s | %s | %s | %.3f ms | %.3f ms | %s | %.0f%% |\n",
			r.Path.Title, r.Path.MTU, num(r.MedianMbps()), num(lo), num(hi),
			rat(r.MedianMbps(), veth.MedianMbps()), rat(r.MedianMbps(), wg.MedianMbps()),
			cpu, rat(r.MedianCPUPerGB(), wg.MedianCPUPerGB()), num(r.medianRetransmits()), r.MedianRTT(), r.AvgRTT(), rat(r.MedianRTT(), wg.MedianRTT()), 100*r.Ping.Loss())
	}
	p("\n")

	cm := rep.path("certmesh")
	tr := ratio(cm.MedianMbps(), wg.MedianMbps())
	cr := ratio(cm.MedianCPUPerGB(), wg.MedianCPUPerGB())
	verdict := "**met**"
	switch {
	case tr >= TargetRatio:
	case cr > 0 && cr <= 1/TargetRatio:
		verdict = fmt.Sprintf("**not met in this run**; but certmesh spent no more CPU per byte than bare "+
			"wireguard-go (%.2f), which points at the machine's noise rather than at extra work in the agent's "+
			"packet path. Run it again on an idle machine to tell", cr)
	default:
		verdict = "**not met**"
	}
	p("**certmesh / bare wireguard-go throughput: %.2f** (ratio of the medians", tr)
	if pr := rep.PairedRatios(); len(pr) > 1 {
		lo, hi := minMax(pr)
		p("; round by round: median %.2f, range %.2f – %.2f", median(pr), lo, hi)
	}
	p("). Target ≥ %.2f: %s. ", TargetRatio, verdict)
	p("**certmesh / bare wireguard-go CPU time per GB: %.2f** (both tunnel ends; lower is better", ratio(cm.MedianCPUPerGB(), wg.MedianCPUPerGB()))
	if pr := rep.PairedCPURatios(); len(pr) > 1 {
		lo, hi := minMax(pr)
		p("; round by round: median %.2f, range %.2f – %.2f", median(pr), lo, hi)
	}
	p("). ")
	p("**certmesh / bare wireguard-go latency (median RTT): %.2f.** ", ratio(cm.MedianRTT(), wg.MedianRTT()))
	p("Tunnel cost over the plain veth: throughput × %.2f with certmesh, × %.2f with bare wireguard-go.\n\n",
		ratio(cm.MedianMbps(), veth.MedianMbps()), ratio(wg.MedianMbps(), veth.MedianMbps()))

	if o.reps > 1 {
		p("<details><summary>Every run (Mbit/s; within a round each path ran once, the order rotating from round to round)</summary>\n\n")
		p("| round |")
		for _, r := range rep.Paths {
			p(" %s |", r.Path.Key)
		}
		p(" throughput certmesh / wireguard-go | CPU per GB certmesh / wireguard-go |")
		extra := [][]float64{rep.PairedRatios(), rep.PairedCPURatios()}
		if rep.path("certmesh-1000") != nil {
			p(" throughput certmesh-1000 / wireguard-go | CPU per GB certmesh-1000 / wireguard-go | throughput certmesh-1000 / certmesh |")
			extra = append(extra, rep.Paired("certmesh-1000", "wireguard-go", false),
				rep.Paired("certmesh-1000", "wireguard-go", true), rep.Paired("certmesh-1000", "certmesh", false))
		}
		p("\n|--:|")
		for range len(rep.Paths) + len(extra) {
			p("--:|")
		}
		p("\n")
		for i := range o.reps {
			p("| %d |", i+1)
			for _, r := range rep.Paths {
				if i < len(r.Runs) {
					p(" %s |", num(r.Runs[i].BitsPerSecond/1e6))
				} else {
					p(" – |")
				}
			}
			for _, v := range extra {
				if i < len(v) {
					p(" %.2f |", v[i])
				} else {
					p(" – |")
				}
			}
			p("\n")
		}
		p("\n</details>\n\n")
	}

	rep.policyMarkdown(p)
	if rep.Revocation != nil {
		rep.Revocation.markdown(p)
	}
	if rep.Faults != nil {
		rep.Faults.markdown(p)
	}
	if rep.NAT != nil {
		rep.NAT.markdown(p)
	}

	p("## Micro-benchmarks: certificates, policy, packet filter\n\n")
	p("`%s`, median of %d run(s). The rate is one second divided by the median ns/op: ", rep.GoBenchCmd, o.benchCount)
	p("one goroutine, so roughly what one core does; for the packet filter (`agent/filter`), whose operations ")
	p("are batches of packets, it is packets per second of wall time, and CPU ns/pkt is the process's CPU ")
	p("time per packet (the steadier figure on a busy machine, and the one that counts the parallel ")
	p("benchmark's goroutines).\n\n")
	p("| benchmark | what it measures | ns/op (median) | rate | CPU ns/pkt | B/op | allocs/op |\n")
	p("|---|---|--:|--:|--:|--:|--:|\n")
	for _, s := range rep.GoBench {
		info := describeGoBench(s)
		cpu := "—"
		if c := goBenchCPUPerPkt(s); c > 0 {
			cpu = num(c)
		}
		p("| `%s` | %s | %s | **%s %s** | %s | %s | %s |\n", s.Name, info.what, num(s.MedianNsPerOp()),
			num(goBenchRate(s)), info.unit, cpu, num(s.MedianMetric("B/op")), num(s.MedianMetric("allocs/op")))
	}
	p("\n")

	p("## How to read this\n\n")
	p("Everything runs on one kernel: the iperf3 client and server and both tunnel endpoints share this machine's ")
	p("%d CPUs, so a tunnel's throughput here is bounded by CPU time for encryption and the user-space hops, not ", m.CPUs)
	p("by any link, and the veth figure is an in-kernel memory copy rather than a network speed. The absolute ")
	p("numbers therefore say little about another machine, and on a shared or virtual machine they move from run ")
	p("to run (see min – max). **The ratios are what matter**: the paths are measured in the same run, ")
	p("interleaved, so drift in the machine's load hits them alike. certmesh / wireguard-go isolates what certmesh ")
	p("adds on top of the wireguard-go it embeds; it should be close to 1, as the packet path is the same code. ")
	p("A ratio clearly below %.2f, or an MTU that differs from the bare wireguard-go row, points at the agent's ", TargetRatio)
	p("device configuration (MTU, TUN offloads, UDP bind, work in the packet path) rather than at the machine; ")
	p("when the min – max ranges of the two rows overlap, the difference is within noise. Tunnel CPU per GB ")
	p("is the steadiest figure on a busy machine: other work steals time from the tunnel and lowers its ")
	p("throughput, but hardly changes the work each byte costs, so its ratio is the one to trust when the ")
	p("throughput ratio swings from round to round. The × veth column is ")
	p("the price of WireGuard itself in user space. ")
	p("The certificate figures are per core and are not on the packet path: an agent verifies a bundle when a ")
	p("peer appears or renews, so Verify/s bounds how fast it absorbs a mesh's churn (a thousand peers at once ")
	p("take about %s), and certificates issued/s bounds the CA's enrollment and renewal capacity. ",
		churn(rep.GoBench))
	p("Parsing and compiling a policy happen once per published version, a decision once per new inbound flow; ")
	p("only the packet filter's established-flow figures are paid on every packet.\n")
	return b.String()
}

// churn estimates how long verifying 1000 bundles from the wire takes.
func churn(res []GoBenchSummary) string {
	for _, s := range res {
		if s.Name == "BenchmarkVerify/wire" && s.MedianNsPerOp() > 0 {
			return (time.Duration(1000 * s.MedianNsPerOp())).Round(time.Millisecond).String()
		}
	}
	return "a moment"
}

// Summary is a few lines for the terminal.
func (rep *Report) Summary() string {
	var b strings.Builder
	for _, r := range rep.Paths {
		fmt.Fprintf(&b, "%-14s %8s Mbit/s  CPU/GB %6s ms  RTT %.3f ms  MTU %d\n", r.Path.Key, num(r.MedianMbps()),
			num(r.MedianCPUPerGB()), r.MedianRTT(), r.Path.MTU)
	}
	if cm, wg := rep.path("certmesh"), rep.path("wireguard-go"); cm != nil && wg != nil {
		fmt.Fprintf(&b, "certmesh / wireguard-go: throughput %.2f (target >= %.2f), CPU per GB %.2f, RTT %.2f\n",
			ratio(cm.MedianMbps(), wg.MedianMbps()), TargetRatio, ratio(cm.MedianCPUPerGB(), wg.MedianCPUPerGB()),
			ratio(cm.MedianRTT(), wg.MedianRTT()))
	}
	if big, wg, one := rep.path("certmesh-1000"), rep.path("wireguard-go"), rep.path("certmesh"); big != nil && wg != nil && one != nil {
		fmt.Fprintf(&b, "certmesh-1000 / wireguard-go (filter off): throughput %.2f (target >= %.2f: under 5%% cost), CPU per GB %.2f; certmesh-1000 / certmesh: throughput %.2f, CPU per GB %.2f\n",
			ratio(big.MedianMbps(), wg.MedianMbps()), PolicyTargetRatio, ratio(big.MedianCPUPerGB(), wg.MedianCPUPerGB()),
			ratio(big.MedianMbps(), one.MedianMbps()), ratio(big.MedianCPUPerGB(), one.MedianCPUPerGB()))
	}
	for _, s := range rep.GoBench {
		fmt.Fprintf(&b, "%-24s %10s ns/op  %8s /s\n", s.Name, num(s.MedianNsPerOp()), num(s.PerSecond()))
	}
	return b.String()
}

// rat formats a/b as "0.97", or "—" when either is 0 (not measured).
func rat(a, b float64) string {
	if a == 0 || b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// num formats v with thousands separators: no decimals from 100 up, one
// below.
func num(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	if math.Abs(v) < 100 && v != math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
