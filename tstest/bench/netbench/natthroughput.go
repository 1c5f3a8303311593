package main

// TCP throughput and CPU through the relay against direct paths, over
// the matrix's pairs (two agents at the same placement), iperf3 rounds
// interleaved as in the data-plane section.

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/netns"
)

// RelayTP is one pair's throughput runs.
type RelayTP struct {
	Scenario connectScenario
	*PathResult
	// Per run: the relay's (certmesh-server's) CPU time during it, and
	// the path the client's status showed for the server's agent before it.
	RelayCPU []time.Duration
	Seen     []string
}

// RelayCPUPerGB is the median of the relay's CPU time per GB in ms.
func (r *RelayTP) RelayCPUPerGB() float64 {
	var v []float64
	for i, x := range r.Runs {
		v = append(v, ms(x.PerGB(r.RelayCPU[i])))
	}
	return median(v)
}

// measureRelayTP runs o.reps rounds of iperf3 over every scenario's pair
// of the matrix, the order rotating from round to round.
func measureRelayTP(ctx context.Context, log *slog.Logger, o options, m *e2e.Mesh, x *Matrix, work string) ([]*RelayTP, error) {
	var (
		rows []*RelayTP
		topo Topology
	)
	for _, sc := range connectScenarios {
		c, s := x.Agents[sc.At][0], x.Agents[sc.At][1]
		p := &Path{Key: sc.Key, Title: sc.Title, Client: c.Host, Server: s.Host, Dst: s.V4(), Iface: c.Iface,
			Procs: []*netns.Process{c.Proc, s.Proc}}
		var err error
		if p.MTU, err = routeMTU(ctx, p.Client, p.Dst); err != nil {
			return nil, err
		}
		if _, err := StartIPerfServer(ctx, s.Host, filepath.Join(work, "iperf3-"+s.Name+".log")); err != nil {
			return nil, err
		}
		topo.Paths = append(topo.Paths, p)
		rows = append(rows, &RelayTP{Scenario: sc, PathResult: &PathResult{Path: p}})
	}
	if err := topo.WarmUp(ctx); err != nil {
		return nil, err
	}
	if !o.quick {
		for _, p := range topo.Paths {
			if _, err := RunIPerf(ctx, p.Client, p.Dst, 2*time.Second, 0); err != nil {
				return nil, err
			}
		}
	}
	relay := []*netns.Process{m.Server.Proc}
	for round := range o.reps {
		for i := range rows {
			r := rows[(round+i)%len(rows)]
			c, s := x.Agents[r.Scenario.At][0], x.Agents[r.Scenario.At][1]
			st, err := c.Status(ctx)
			if err != nil {
				return nil, err
			}
			seen := pathTo(st, s.Name)
			cpu0, err := cpuTime(relay)
			if err != nil {
				return nil, err
			}
			run, err := runIPerfRetry(ctx, log, r.Path, o)
			if err != nil {
				return nil, err
			}
			cpu1, err := cpuTime(relay)
			if err != nil {
				return nil, err
			}
			r.Runs, r.RelayCPU, r.Seen = append(r.Runs, run), append(r.RelayCPU, cpu1-cpu0), append(r.Seen, seen)
			log.Info("netbench: paths: iperf3", "round", round+1, "of", o.reps, "pair", r.Scenario.Title, "path", seen,
				"Mbit/s", fmt.Sprintf("%.0f", run.BitsPerSecond/1e6), "agents_cpu", run.TunnelCPU, "relay_cpu", cpu1-cpu0)
		}
	}
	return rows, nil
}
