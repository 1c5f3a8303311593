package main

// Roaming recovery: the public address of the router in front of one of
// the matrix's EIM-NAT agents changes (the ISP readdresses it, every NAT
// mapping is lost) while datagrams flow both ways between that agent and
// a public one, and between it and the other EIM-NAT agent (whose router
// admits only what its side started: the pair must punch again).

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/certmesh/certmesh/tstest/e2e"
)

// Roaming is the section's roaming measurement.
type Roaming struct {
	Laptop string   // the roaming agent
	Peers  []string // its peers measured, each with a stream each way
	Runs   []RoamRun
	// ReEnrolled says whether the laptop's device ID or certificate
	// serial changed across all the moves (it must not).
	ReEnrolled bool
}

// RoamRun is one address change.
type RoamRun struct {
	Moved netip.Addr
	// Recovery, per peer: from the change until the first datagram sent
	// after it arrived, in each direction (to the peer, from it); 0 for
	// a direction that had not recovered within natDeadline.
	Recovery [][2]time.Duration
	Path     []string // the laptop's status for each peer afterwards
}

// BothWays is the per-peer recovery in both directions (the later one),
// and whether both directions recovered.
func (r RoamRun) BothWays(peer int) (time.Duration, bool) {
	d := r.Recovery[peer]
	return max(d[0], d[1]), d[0] > 0 && d[1] > 0
}

// measureRoaming moves the laptop's router reps times, the streams
// flowing throughout.
func measureRoaming(ctx context.Context, log *slog.Logger, m *e2e.Mesh, x *Matrix, reps int) (*Roaming, error) {
	laptop := x.Agents[e2e.EIMNAT][0]
	peers := []*e2e.Agent{x.Agents[e2e.Public][0], x.Agents[e2e.EIMNAT][1]}
	ro := &Roaming{Laptop: laptop.Name}
	var streams [][]*e2e.UDPStream
	defer func() {
		for _, ss := range streams {
			for _, s := range ss {
				s.Stop()
			}
		}
	}()
	for i, p := range peers {
		ss, err := pairStreams(ctx, laptop, p.Host, p.Addrs, uint16(9400+2*i))
		if err != nil {
			return nil, err
		}
		streams = append(streams, ss)
		ro.Peers = append(ro.Peers, fmt.Sprintf("%s (%s)", p.Name, x.placementOf(p)))
	}
	steady := func() error {
		wctx, cancel := context.WithTimeout(ctx, natDeadline)
		defer cancel()
		for _, ss := range streams {
			for _, s := range ss {
				if err := s.WaitSteady(wctx, 25); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := steady(); err != nil {
		return nil, err
	}
	before, err := laptop.Status(ctx)
	if err != nil {
		return nil, err
	}
	router := laptop.Host.Router()
	for rep := range reps {
		var run RoamRun
		if run.Moved, err = router.Readdress(ctx); err != nil {
			return nil, err
		}
		t0 := time.Now()
		var from [][2]uint64
		for _, ss := range streams {
			s0, _, _ := ss[0].Snapshot()
			s1, _, _ := ss[1].Snapshot()
			from = append(from, [2]uint64{s0, s1})
			run.Recovery = append(run.Recovery, [2]time.Duration{})
		}
		_ = poll(ctx, 5*time.Millisecond, "", func() error {
			missing := 0
			for i, ss := range streams {
				for j, s := range ss {
					if at, ok := s.ArrivedAfter(from[i][j]); ok && run.Recovery[i][j] == 0 {
						run.Recovery[i][j] = max(at.Sub(t0), time.Nanosecond)
					} else if !ok {
						missing++
					}
				}
			}
			if missing > 0 {
				return fmt.Errorf("%d streams not flowing again", missing)
			}
			return nil
		})
		st, err := laptop.Status(ctx)
		if err != nil {
			return nil, err
		}
		for _, p := range peers {
			run.Path = append(run.Path, pathTo(st, p.Name))
		}
		ro.Runs = append(ro.Runs, run)
		log.Info("netbench: paths: roaming", "rep", rep+1, "of", reps, "router_moved_to", run.Moved,
			"recovery", run.Recovery, "paths", run.Path)
		if err := steady(); err != nil {
			return ro, nil // it did not recover: the runs so far are the finding
		}
	}
	after, err := laptop.Status(ctx)
	if err != nil {
		return nil, err
	}
	ro.ReEnrolled = after.Self.DeviceID != before.Self.DeviceID || after.Self.CertSerial != before.Self.CertSerial
	return ro, nil
}

// placementOf returns where a matrix agent sits.
func (x *Matrix) placementOf(a *e2e.Agent) e2e.Placement {
	for p, as := range x.Agents {
		for _, b := range as {
			if a == b {
				return p
			}
		}
	}
	return ""
}

// markdown writes the roaming subsection.
func (ro *Roaming) markdown(p func(string, ...any)) {
	p("### Roaming: a router's public address changes\n\n")
	p("The router in front of the matrix's EIM-NAT agent %s is given a new public address and loses the old one, %d times, ", ro.Laptop, len(ro.Runs))
	p("while a datagram crosses the tunnel every %s each way between %s and each peer below; ", natEvery, ro.Laptop)
	p("the NAT's mappings go with the old address, so every flow must be found again (the other EIM-NAT agent's router admits only what its own side started: that pair must punch again). ")
	p("Recovery is from the change (the new address set, the old one removed) to the first datagram sent after it arriving, the later of the two directions; median / p90 / max. ")
	if ro.ReEnrolled {
		p("**The agent re-enrolled** (its device ID or certificate serial changed). ")
	} else {
		p("The agent kept its device ID and certificate throughout (no re-enrollment). ")
	}
	p("\n\n| peer | recovered | recovery, both ways | to the peer | from the peer | path afterwards | goal | verdict |\n|---|--:|--:|--:|--:|---|--:|---|\n")
	for i, peer := range ro.Peers {
		var both, to, from []time.Duration
		paths := map[string]int{}
		for _, run := range ro.Runs {
			if d, ok := run.BothWays(i); ok {
				both = append(both, d)
			}
			if d := run.Recovery[i][0]; d > 0 {
				to = append(to, d)
			}
			if d := run.Recovery[i][1]; d > 0 {
				from = append(from, d)
			}
			paths[run.Path[i]]++
		}
		p("| %s | %d of %d | **%s** | %s | %s | %s | %s | %s |\n", peer, len(both), len(ro.Runs), spread(seconds(both)),
			spread(seconds(to)), spread(seconds(from)), counts(paths), goalRoam, verdict(seconds(both), len(ro.Runs), goalRoam))
	}
	p("\n")
}
