// Command netbench measures certmesh's data plane and certificate handling
// on this machine and writes the figures to a Markdown file (`make bench`
// writes BENCHMARKS.md).
//
// In one run, side by side, it measures TCP throughput (iperf3) and ping
// latency over four paths between two network namespaces joined by veth
// pairs and a bridge (built with tstest/netns):
//
//   - the plain veth path, as the baseline;
//   - bare upstream wireguard-go (built from the pinned module) configured
//     by hand with wg(8), with the agents' own keys and overlay addresses:
//     the agents' data plane with the packet filter off;
//   - two certmesh agents on kernel TUN, through the mesh, under a one-rule
//     allow-all policy;
//   - the same agents under a generated 1,000-rule policy whose last rule
//     alone accepts the traffic (LargePolicy). Before every measurement
//     over either certmesh path its policy is published as a new version
//     and installed on both agents.
//
// Throughput runs are interleaved (one run of every path per round, the
// order rotating) so that drift in the machine's load hits all paths
// alike. It then runs the Go micro-benchmarks of ./certs, ./ca, ./policy
// and ./agent/filter.
//
// It needs root (network namespaces, TUN), iproute2, iperf3, ping and
// wg(8). Every namespace and process it starts is removed when it ends,
// including on SIGINT/SIGTERM; leftovers of a run that was killed are
// removed by the next run.
//
// Through the real binaries again (faults.go), it counts the
// datagrams lost between three agents across a renewal cycle, a graceful
// restart and a kill -9 restart of certmesh-server, and the time until
// every agent is back. Last (natpaths.go), behind the lab's NAT routers:
// the time from admission to first packet, direct and relayed, the path
// matrix, throughput through the relay against direct, and roaming.
//
//	go run ./tstest/bench/netbench -out BENCHMARKS.md   # full: ~10 minutes
//	go run ./tstest/bench/netbench -quick -out /tmp/b.md
//	go run ./tstest/bench/netbench -only faults         # that section alone: ~1.5 minutes
//	go run ./tstest/bench/netbench -only paths          # NAT traversal alone (natpaths.go)
//	go run ./tstest/bench/netbench -only relay-throughput # its relay throughput part alone: ~4 minutes
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/netns"
)

// netPrefix names the benchmark's namespaces ("cmbench-a1", ...). It is
// fixed so that a run can remove what a killed run left behind; a lock
// file keeps two runs from sharing it.
const netPrefix = "cmbench"

// goBenchPkgs are the packages whose Go benchmarks are run.
var goBenchPkgs = []string{"./certs", "./ca", "./policy", "./agent/filter"}

type options struct {
	out          string
	quick        bool
	duration     time.Duration
	omit         time.Duration
	reps         int
	pings        int
	pingInterval time.Duration
	benchCount   int
	keep         bool
	verbose      bool
	only         string
	pathReps     int
}

func main() {
	var o options
	flag.StringVar(&o.out, "out", "BENCHMARKS.md", "write the report here (\"-\" for stdout)")
	flag.BoolVar(&o.quick, "quick", false, "quick run: 3 s per iperf3 run, 1 round, 20 pings, -count 1 (overrides the other knobs)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each iperf3 run (whole seconds)")
	flag.DurationVar(&o.omit, "omit", time.Second, "seconds of each iperf3 run left out of the figure (TCP slow start)")
	flag.IntVar(&o.reps, "reps", 5, "iperf3 runs per path (the median is reported)")
	flag.IntVar(&o.pings, "pings", 50, "pings per path")
	flag.DurationVar(&o.pingInterval, "ping-interval", 100*time.Millisecond, "interval between pings")
	flag.IntVar(&o.benchCount, "count", 3, "go test -count for the Go micro-benchmarks (the median is reported)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (binaries, state, logs)")
	flag.BoolVar(&o.verbose, "debug", false, "debug logging (not -v: glog, linked through the CA for the revocation benchmark, owns that flag)")
	flag.StringVar(&o.only, "only", "", "\"revocation\": measure revocation latency only (no root needed); \"faults\": packets lost across renewal and server restarts only; \"paths\": NAT traversal only (first packet, path matrix, relay throughput, roaming); \"relay-throughput\": of the NAT traversal, the relay throughput against direct only (the matrix's agents, then iperf3), replacing just that subsection; \"routes\": subnet routes only (routed / direct throughput, router failover); each replaces just its section of the report at -out")
	flag.IntVar(&o.pathReps, "path-reps", 10, "repetitions of each first-packet pair and of the roaming move (median and p90 reported)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./tstest/bench/netbench [flags]\n\n"+
			"Measures veth vs bare wireguard-go vs certmesh with 1 and 1,000 policy rules (iperf3, ping) in network namespaces\n"+
			"and the Go micro-benchmarks of ./certs, ./ca, ./policy and ./agent/filter; writes a Markdown report. Needs root.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if o.only != "" && o.only != "revocation" && o.only != "faults" && o.only != "paths" && o.only != "routes" && o.only != "relay-throughput" {
		fmt.Fprintln(os.Stderr, "netbench: -only takes \"revocation\", \"faults\", \"paths\", \"relay-throughput\" or \"routes\"")
		os.Exit(2)
	}
	if o.quick {
		o.duration, o.omit, o.reps, o.pings, o.benchCount, o.pathReps = 3*time.Second, 0, 1, 20, 1, 2
	}
	if o.reps < 1 || o.pings < 1 || o.benchCount < 1 || o.pathReps < 1 || o.duration < time.Second {
		fmt.Fprintln(os.Stderr, "netbench: -reps, -pings, -count and -path-reps must be at least 1, -duration at least 1s")
		os.Exit(2)
	}

	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, log, o)
	if err != nil && ctx.Err() != nil {
		err = errors.New("interrupted; namespaces and processes removed, no report written")
	}
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "netbench: %v\n", err)
		os.Exit(1)
	}
}

// command is how the report says it was produced.
func command() string {
	return strings.TrimSpace("go run ./tstest/bench/netbench " + strings.Join(os.Args[1:], " "))
}

func run(ctx context.Context, log *slog.Logger, o options) (err error) {
	if o.only == "revocation" {
		root, err := e2e.ModuleRoot(ctx)
		if err != nil {
			return err
		}
		log.Info("netbench: measuring revocation latency only", "cmd", "go "+strings.Join(revocationBenchArgs(), " "))
		return runOnlyRevocation(ctx, e2e.GoCommand(), root, o.out)
	}
	if o.only == "faults" {
		return runOnlyFaults(ctx, log, o.out, o.keep)
	}
	if o.only == "paths" {
		return runOnlyPaths(ctx, log, o)
	}
	if o.only == "relay-throughput" {
		return runOnlyRelayTP(ctx, log, o)
	}
	if o.only == "routes" {
		return runOnlyRoutes(ctx, log, o)
	}
	if err := netns.Available(); err != nil {
		return fmt.Errorf("the network benchmark needs root and network namespaces: %w", err)
	}
	if err := requireCommands("ip", "ss", "iperf3", "ping", "wg", "nft"); err != nil {
		return err
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("no TUN device: %w", err)
	}
	unlock, err := lock()
	if err != nil {
		return err
	}
	defer unlock()

	goCmd := e2e.GoCommand()
	root, err := e2e.ModuleRoot(ctx)
	if err != nil {
		return err
	}
	outPath := o.out
	if outPath != "-" {
		if outPath, err = filepath.Abs(outPath); err != nil {
			return err
		}
	}

	work, done, err := workDir(log)
	if err != nil {
		return err
	}
	defer func() { done(o.keep || err != nil) }()

	rep := &Report{Command: command(), Start: time.Now(), Opts: o}
	rep.Machine = readMachine(ctx, goCmd, root)

	log.Info("netbench: building certmesh, certmesh-server and wireguard-go")
	bin, err := e2e.Build(ctx, filepath.Join(work, "bin"), true)
	if err != nil {
		return err
	}

	if err := runNetwork(ctx, log, o, bin, work, rep); err != nil {
		return err
	}

	log.Info("netbench: running the Go micro-benchmarks", "cmd", "go "+strings.Join(goBenchArgs(o.benchCount, goBenchPkgs), " "))
	rep.GoBenchCmd = "go " + strings.Join(goBenchArgs(o.benchCount, goBenchPkgs), " ")
	res, _, err := RunGoBench(ctx, goCmd, root, o.benchCount, goBenchPkgs)
	if err != nil {
		return err
	}
	rep.GoBench = GroupGoBench(res)
	log.Info("netbench: measuring revocation latency", "cmd", "go "+strings.Join(revocationBenchArgs(), " "))
	if rep.Revocation, err = runRevocation(ctx, goCmd, root); err != nil {
		return err
	}
	log.Info("netbench: measuring packets lost across renewal and server restarts")
	if rep.Faults, err = runFaults(ctx, log, bin, work); err != nil {
		return err
	}
	log.Info("netbench: measuring NAT traversal: first packet, path matrix, relay throughput, roaming")
	if rep.NAT, err = runPaths(ctx, log, o, bin, work); err != nil {
		return err
	}
	rep.Machine.LoadAfter = loadAvg()
	rep.Elapsed = time.Since(rep.Start)

	md := rep.Markdown()
	if outPath == "-" {
		_, err = os.Stdout.WriteString(md)
		return err
	}
	if err := writeFileAtomic(outPath, []byte(md)); err != nil {
		return err
	}
	log.Info("netbench: report written", "out", outPath, "took", rep.Elapsed.Round(time.Second))
	fmt.Fprint(os.Stderr, rep.Summary())
	return nil
}

// runNetwork builds the namespaces, measures every path and tears it all
// down again, whatever happens.
func runNetwork(ctx context.Context, log *slog.Logger, o options, bin *e2e.Binaries, work string, rep *Report) (err error) {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	n, err := freshNetwork(cctx, log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := n.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()

	topo, err := SetUp(cctx, log, n, bin, work)
	if err != nil {
		return err
	}
	if err := topo.WarmUp(ctx); err != nil {
		return fmt.Errorf("%w%s", err, meshLogs(topo.Mesh))
	}
	servers := map[*netns.Host]bool{}
	for _, p := range topo.Paths {
		if servers[p.Server] {
			continue
		}
		servers[p.Server] = true
		if _, err := StartIPerfServer(ctx, p.Server, filepath.Join(work, "iperf3-"+p.Server.Name+".log")); err != nil {
			return err
		}
	}
	for _, p := range topo.Paths {
		rep.Paths = append(rep.Paths, &PathResult{Path: p})
	}

	// Latency first, on an otherwise idle network.
	for _, pr := range rep.Paths {
		p := pr.Path
		if err := usePolicy(ctx, log, topo, pr); err != nil {
			return err
		}
		log.Info("netbench: ping", "path", p.Key, "from", p.Client.Name, "to", p.Dst, "count", o.pings)
		pr.Ping, err = e2e.Ping(ctx, p.Client, p.Dst, o.pings, o.pingInterval)
		if err != nil {
			return err
		}
	}

	// A short unreported run per path warms up TCP, caches and CPU clocks.
	if !o.quick {
		for _, pr := range rep.Paths {
			if err := usePolicy(ctx, log, topo, pr); err != nil {
				return err
			}
			if _, err := RunIPerf(ctx, pr.Path.Client, pr.Path.Dst, 2*time.Second, 0); err != nil {
				return err
			}
		}
	}

	// Throughput: o.reps rounds, each running every path once, the order
	// rotating from round to round.
	for round := range o.reps {
		for i := range rep.Paths {
			pr := rep.Paths[(round+i)%len(rep.Paths)]
			p := pr.Path
			if err := usePolicy(ctx, log, topo, pr); err != nil {
				return err
			}
			var before uint64
			if p.Policy != nil {
				if before, err = decidedByLast(ctx, topo, p); err != nil {
					return err
				}
			}
			r, err := runIPerfRetry(ctx, log, p, o)
			if err != nil {
				return err
			}
			pr.Runs = append(pr.Runs, r)
			args := []any{"round", round + 1, "of", o.reps, "path", p.Key,
				"Mbit/s", fmt.Sprintf("%.0f", r.BitsPerSecond/1e6), "retransmits", r.Retransmits}
			if p.Policy != nil {
				after, err := decidedByLast(ctx, topo, p)
				if err != nil {
					return err
				}
				pr.LastRuleFlows = append(pr.LastRuleFlows, after-before)
				args = append(args, "policy version", pr.Versions[len(pr.Versions)-1], "flows accepted by the last rule", after-before)
			}
			log.Info("netbench: iperf3", args...)
		}
	}
	return nil
}

// usePolicy publishes the policy of pr's path, if it has one, as a new
// version and waits until both agents hold it.
func usePolicy(ctx context.Context, log *slog.Logger, topo *Topology, pr *PathResult) error {
	p := pr.Path
	if p.Policy == nil {
		return nil
	}
	v, wait, err := publishPolicy(ctx, topo.Mesh, p.Policy, topo.Agents)
	if err != nil {
		return fmt.Errorf("path %s: %w%s", p.Key, err, meshLogs(topo.Mesh))
	}
	pr.Versions = append(pr.Versions, v)
	pr.InstallWaits = append(pr.InstallWaits, wait)
	log.Info("netbench: policy installed on both agents", "path", p.Key, "version", v, "rules", p.Rules,
		"after publish", wait.Round(time.Millisecond))
	// Let the agents finish whatever installing it set off (saving it,
	// re-deciding tracked flows) before anything is measured.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(500 * time.Millisecond):
	}
	return nil
}

// decidedByLast returns how many flows the last rule of p's policy has
// accepted on the server's agent, after checking that the agent holds a
// policy of p.Rules rules.
func decidedByLast(ctx context.Context, topo *Topology, p *Path) (uint64, error) {
	srv := topo.Agents[1]
	n, rules, err := ruleAccepts(ctx, srv, p.Rules-1)
	if err != nil {
		return 0, err
	}
	if rules != p.Rules {
		return 0, fmt.Errorf("path %s: %s holds a policy of %d rules, want %d", p.Key, srv.Name, rules, p.Rules)
	}
	return n, nil
}

// runIPerfRetry retries a failed iperf3 run twice (a server that is still
// tearing down the previous test refuses the next one for a moment).
func runIPerfRetry(ctx context.Context, log *slog.Logger, p *Path, o options) (*IPerf, error) {
	var err error
	for try := range 3 {
		if try > 0 {
			log.Warn("netbench: iperf3 failed, retrying", "path", p.Key, "err", err)
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Second):
			}
		}
		var (
			r          *IPerf
			cpu0, cpu1 time.Duration
		)
		if cpu0, err = cpuTime(p.Procs); err != nil {
			return nil, err
		}
		if r, err = RunIPerf(ctx, p.Client, p.Dst, o.duration, o.omit); err == nil {
			if cpu1, err = cpuTime(p.Procs); err != nil {
				return nil, err
			}
			r.TunnelCPU = cpu1 - cpu0
			r.Transfer = time.Duration(r.Seconds*float64(time.Second)) + o.omit
			return r, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
	}
	return nil, err
}

// requireCommands checks that the programs the benchmark runs are in PATH.
func requireCommands(names ...string) error {
	for _, c := range names {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("%s not found (apt-get install -y iproute2 iperf3 iputils-ping wireguard-tools nftables): %w", c, err)
		}
	}
	return nil
}

// lock makes sure only one netbench runs at a time, since they share the
// namespace prefix.
func lock() (func(), error) {
	dir := "/run/lock"
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		dir = os.TempDir()
	}
	path := filepath.Join(dir, "certmesh-netbench.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another netbench is running (%s is locked): %w", path, err)
	}
	return func() { f.Close() }, nil
}

func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}
