package main

// The subnet-routes part of the report (issue 15): through the real
// binaries in network namespaces, a client that accepts routes reaches a
// LAN host (which runs no agent) through one of two subnet routers
// certified for the LAN. Routed throughput is given as a ratio of the
// direct overlay throughput between the same client and router; failover
// is the time from the primary router vanishing from the network to the
// client's first connection to the LAN host through the standby, and
// recovery the time from its return to the route being on it again (held
// for the agent's hysteresis). `-only routes` runs it by itself and
// replaces just its section of an existing report.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/netns"
)

const routesHeading = "## Subnet routes"

var routesLAN = netip.MustParsePrefix("10.77.0.0/24")

// RoutesBench is the section's outcome.
type RoutesBench struct {
	At      time.Time
	Elapsed time.Duration
	Load    [2]string
	Reps    int // iperf3 runs per path
	// Direct and Routed are iperf3 receiver throughputs (bit/s, medians):
	// client to the router's overlay address, and client to the LAN host
	// through the router.
	Direct, Routed float64
	// Failover and Back are per repetition.
	Failover, Back []time.Duration
}

// runRoutes builds the site and measures.
func runRoutes(ctx context.Context, log *slog.Logger, o options, bin *e2e.Binaries, work string) (r *RoutesBench, err error) {
	r = &RoutesBench{At: time.Now(), Reps: o.reps}
	n, err := freshNetwork(ctx, log)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, n.Close()) }()
	m := e2e.New(n, e2e.Options{Bin: bin, Dir: filepath.Join(work, "routes"), Logger: log})
	wrap := func(err error) error { return fmt.Errorf("%w%s", err, meshLogs(m)) }
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := m.StartServer(cctx); err != nil {
		return nil, wrap(err)
	}
	lan, err := n.AddLAN(cctx, "site", routesLAN)
	if err != nil {
		return nil, err
	}
	lanHost, err := lan.AddHost(cctx, "lanhost")
	if err != nil {
		return nil, err
	}
	var echo e2e.EchoServer
	defer echo.Close()
	ln, err := lanHost.Listen("tcp", netip.AddrPortFrom(lanHost.Addr, 7000).String())
	if err != nil {
		return nil, err
	}
	echo.Serve(ln)
	var routers []*e2e.Agent
	for _, name := range []string{"r1", "r2"} {
		h, err := n.AddHost(cctx, name)
		if err != nil {
			return nil, err
		}
		if _, err := lan.Join(cctx, h, "eth1"); err != nil {
			return nil, err
		}
		a, err := m.StartAgentWith(cctx, h, e2e.AgentOptions{Args: []string{"--advertise-routes", routesLAN.String()}})
		if err != nil {
			return nil, wrap(err)
		}
		routers = append(routers, a)
	}
	if routers[1].ID < routers[0].ID {
		routers[0], routers[1] = routers[1], routers[0]
	}
	ch, err := n.AddHost(cctx, "client")
	if err != nil {
		return nil, err
	}
	client, err := m.StartAgentWith(cctx, ch, e2e.AgentOptions{Args: []string{"--accept-routes"}})
	if err != nil {
		return nil, wrap(err)
	}
	if err := m.WaitConverged(cctx, m.Agents(), false); err != nil {
		return nil, wrap(err)
	}
	if _, err := m.PublishPolicy(cctx, []byte(`{"rules": [{"from": ["*"], "to": ["*", "`+routesLAN.String()+`"], "ports": ["*"]}]}`)); err != nil {
		return nil, wrap(err)
	}
	for _, a := range routers {
		if _, err := m.ServerCLI(cctx, "devices", "routes", "approve", "--state", m.Server.StateDir, string(a.ID), routesLAN.String()); err != nil {
			return nil, wrap(err)
		}
	}
	echoAt := netip.AddrPortFrom(lanHost.Addr, 7000)
	reach := func(ctx context.Context) error { return e2e.Reach(ctx, e2e.HostDialer(ch), echoAt, time.Second) }
	if err := routedVia(cctx, client, routers[0], reach); err != nil {
		return nil, wrap(err)
	}

	// Throughput: the same client to the primary router's overlay address,
	// and through it to the LAN host.
	for _, h := range []*netns.Host{routers[0].Host, lanHost} {
		if _, err := StartIPerfServer(ctx, h, filepath.Join(work, "routes", h.Name+"-iperf3.log")); err != nil {
			return nil, err
		}
	}
	var direct, routed []float64
	for range o.reps {
		for _, x := range []struct {
			dst netip.Addr
			out *[]float64
		}{{routers[0].V4(), &direct}, {lanHost.Addr, &routed}} {
			res, err := RunIPerf(ctx, ch, x.dst, o.duration, o.omit)
			if err != nil {
				return nil, wrap(err)
			}
			*x.out = append(*x.out, res.BitsPerSecond)
		}
	}
	r.Direct, r.Routed = median(direct), median(routed)

	// Failover and back, o.pathReps times.
	for range o.pathReps {
		start := time.Now()
		if err := routers[0].Host.CutOff(ctx, true); err != nil {
			return nil, err
		}
		if err := routedVia(ctx, client, routers[1], reach); err != nil {
			return nil, wrap(err)
		}
		r.Failover = append(r.Failover, time.Since(start))
		back := time.Now()
		if err := routers[0].Host.CutOff(ctx, false); err != nil {
			return nil, err
		}
		if err := routedVia(ctx, client, routers[0], reach); err != nil {
			return nil, wrap(err)
		}
		r.Back = append(r.Back, time.Since(back))
	}
	r.Elapsed = time.Since(r.At)
	return r, nil
}

// routedVia waits (up to a minute) until client's status routes the LAN
// through router and reach succeeds.
func routedVia(ctx context.Context, client, router *e2e.Agent, reach func(context.Context) error) error {
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return netns.WaitFor(wctx, 100*time.Millisecond, func() error {
		st, err := client.Status(wctx)
		if err != nil {
			return err
		}
		if len(st.Routes.Installed) != 1 || st.Routes.Installed[0].Via != router.ID {
			return fmt.Errorf("client routes %+v, want %s via %s", st.Routes.Installed, routesLAN, router.Name)
		}
		return reach(wctx)
	})
}

func durationsOf(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = d.Seconds()
	}
	return out
}

// markdown writes the section.
func (r *RoutesBench) markdown(p func(string, ...any)) {
	p("%s\n\n", routesHeading)
	p("Measured on %s UTC (%s) with `%s` (`-only routes` replaces only this section); load average (1/5/15 min) %s before, %s after. ",
		r.At.UTC().Format("2006-01-02 15:04"), r.Elapsed.Round(time.Second), command(), r.Load[0], r.Load[1])
	p("certmesh-server, two kernel-mode subnet routers certified for %s (a LAN of their own with one host that runs no agent) and a client with `--accept-routes`, the real binaries, each in its own namespace. ", routesLAN)
	p("Throughput is iperf3 TCP from the client, the median of %d runs, to the primary router's overlay address (direct) and through it, masqueraded, to the LAN host (routed). ", r.Reps)
	p("Failover is from the primary vanishing from the network (an nft drop on its interface) to the client's status showing the standby and a TCP echo through it to the LAN host; back is from its return to the same through it again, which waits for the hold time (%s) by design.\n\n", agent.RouteHoldUp)
	p("| direct overlay | routed | routed / direct |\n|--:|--:|--:|\n")
	p("| %s Mbit/s | %s Mbit/s | **%.2f** |\n\n", num(r.Direct/1e6), num(r.Routed/1e6), ratio(r.Routed, r.Direct))
	fo, back := durationsOf(r.Failover), durationsOf(r.Back)
	lo, hi := minMax(fo)
	blo, bhi := minMax(back)
	p("| | median | min | max | repetitions |\n|---|--:|--:|--:|--:|\n")
	p("| failover to the standby | **%.1f s** | %.1f s | %.1f s | %d |\n", median(fo), lo, hi, len(fo))
	p("| back on the primary | %.1f s | %.1f s | %.1f s | %d |\n\n", median(back), blo, bhi, len(back))
}

// runOnlyRoutes measures the section and replaces it in the report.
func runOnlyRoutes(ctx context.Context, log *slog.Logger, o options) error {
	return runOnlySection(ctx, log, o.out, o.keep, "routes", routesHeading,
		func(ctx context.Context, bin *e2e.Binaries, work string) (func(func(string, ...any)), error) {
			before := loadAvg()
			r, err := runRoutes(ctx, log, o, bin, work)
			if err != nil {
				return nil, err
			}
			r.Load = [2]string{before, loadAvg()}
			return r.markdown, nil
		})
}
