package main

// The topology matrix: two agents at each placement (so that a placement
// paired with itself has two distinct agents), each NATed one behind a
// router of its own, all up at once; every ordered pair exchanges data
// through the tunnel, then each agent's status shows which path it found
// to each peer.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/tstest/e2e"
)

const echoPort = 7000

// Matrix is the path found between agents at every pair of placements.
type Matrix struct {
	Agents map[e2e.Placement][]*e2e.Agent // two at each placement
	// Views counts, for each (observer's placement, peer's placement),
	// the paths `certmesh status --json` on the observers showed for the
	// peers at the end: path → how many (observer, peer) views.
	Views map[[2]e2e.Placement]map[string]int
	// Reached is from the last agent running until every ordered pair had
	// exchanged a line through the tunnel (TCP echo); Unreached are the
	// pairs that had not within natDeadline.
	Reached   time.Duration
	Unreached []string
	// Settled is from then until every view showed the path required
	// (0: not within natDeadline); Off are the views that did not.
	Settled time.Duration
	Off     []string
}

// requiredPath is the path issue 14 requires between placements a and b:
// direct where hole punching can work (both public or EIM NAT) and between
// a symmetric NAT and a public host (which answers the mapped port the
// NATed side's probes come from), the relay otherwise.
func requiredPath(a, b e2e.Placement) string {
	open := map[e2e.Placement]int{e2e.Public: 2, e2e.EIMNAT: 1, e2e.SymmetricNAT: 0, e2e.UDPBlocked: -9}
	if open[a]+open[b] >= 2 {
		return "direct"
	}
	return "relay"
}

// measureMatrix starts the matrix's agents and records the paths found.
func measureMatrix(ctx context.Context, log *slog.Logger, m *e2e.Mesh) (*Matrix, error) {
	x := &Matrix{Agents: map[e2e.Placement][]*e2e.Agent{}, Views: map[[2]e2e.Placement]map[string]int{}}
	var all []*e2e.Agent
	at := map[*e2e.Agent]e2e.Placement{}
	for _, sc := range connectScenarios {
		for i := 1; i <= 2; i++ {
			h, err := m.Place(ctx, fmt.Sprintf("m%s%d", sc.Key, i), sc.At)
			if err != nil {
				return nil, err
			}
			a, err := m.StartAgentWith(ctx, h, e2e.AgentOptions{Args: m.STUNArgs()})
			if err != nil {
				return nil, err
			}
			x.Agents[sc.At] = append(x.Agents[sc.At], a)
			all = append(all, a)
			at[a] = sc.At
		}
	}
	log.Info("netbench: paths: matrix agents running", "agents", len(all))
	var echo e2e.EchoServer
	defer echo.Close()
	for _, a := range all {
		ln, err := a.Host.Listen("tcp", netip.AddrPortFrom(a.V4(), echoPort).String())
		if err != nil {
			return nil, err
		}
		echo.Serve(ln)
	}

	start := time.Now()
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for _, a := range all {
		for _, b := range all {
			if a == b {
				continue
			}
			wg.Go(func() {
				dst := netip.AddrPortFrom(b.V4(), echoPort)
				if err := poll(ctx, 100*time.Millisecond, "", func() error {
					return e2e.Reach(ctx, e2e.HostDialer(a.Host), dst, 2*time.Second)
				}); err != nil {
					mu.Lock()
					x.Unreached = append(x.Unreached, a.Name+" → "+b.Name)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	x.Reached = time.Since(start)
	log.Info("netbench: paths: matrix pairs exchanged data", "after", x.Reached.Round(time.Millisecond), "unreached", x.Unreached)

	start = time.Now()
	views := func(status func(*e2e.Agent) (*agent.Status, error)) (off []string, err error) {
		clear(x.Views)
		for _, a := range all {
			st, err := status(a)
			if err != nil {
				return nil, err
			}
			for _, b := range all {
				if a == b {
					continue
				}
				path := pathTo(st, b.Name)
				k := [2]e2e.Placement{at[a], at[b]}
				if x.Views[k] == nil {
					x.Views[k] = map[string]int{}
				}
				x.Views[k][path]++
				if want := requiredPath(at[a], at[b]); path != want {
					off = append(off, fmt.Sprintf("%s has %s on %s, want %s", a.Name, b.Name, path, want))
				}
			}
		}
		return off, nil
	}
	err := poll(ctx, 250*time.Millisecond, "", func() error {
		off, err := views(func(a *e2e.Agent) (*agent.Status, error) { return a.Status(ctx) })
		if err != nil {
			return err
		}
		if len(off) > 0 {
			return errors.New(strings.Join(off, "; "))
		}
		return nil
	})
	if err == nil {
		x.Settled = time.Since(start)
	}
	// The table is what `certmesh status --json` shows, as a user sees it.
	if x.Off, err = views(func(a *e2e.Agent) (*agent.Status, error) { return a.StatusCLI(ctx, m.Bin) }); err != nil {
		return nil, err
	}
	log.Info("netbench: paths: matrix paths", "settled_after", x.Settled.Round(time.Millisecond), "off", x.Off)
	return x, nil
}

// markdown writes the matrix's subsection.
func (x *Matrix) markdown(p func(string, ...any)) {
	p("### Topology matrix: the path found\n\n")
	p("Two agents at each placement, %d in all, up at once; every ordered pair exchanged a line through the tunnel (TCP echo) ", 2*len(e2e.Placements))
	p("%s after the last agent ran", fmtDur(x.Reached))
	if len(x.Unreached) > 0 {
		p(", except **%s**, which never did within %s", strings.Join(x.Unreached, ", "), natDeadline)
	}
	p("; ")
	if x.Settled > 0 {
		p("every agent's status showed every peer on its required path %s later. ", fmtDur(x.Settled))
	} else {
		p("within %s after that, not every view showed its required path (below). ", natDeadline)
	}
	p("A cell is what `certmesh status --json` on the agents of the row showed for the peers of the column: ")
	p("each path with the number of (agent, peer) views showing it (4 per cell, 2 on the diagonal, where the two agents see each other), and the path issue 14 requires; ✗ marks a cell with a view off it.\n\n")
	p("| agent at ↓ / peer at → |")
	for _, b := range e2e.Placements {
		p(" %s |", b)
	}
	p("\n|---|%s\n", strings.Repeat("---|", len(e2e.Placements)))
	for _, a := range e2e.Placements {
		p("| **%s** |", a)
		for _, b := range e2e.Placements {
			want := requiredPath(a, b)
			got := x.Views[[2]e2e.Placement{a, b}]
			mark := ""
			for path := range got {
				if path != want {
					mark = " ✗"
				}
			}
			var parts []string
			for _, path := range []string{"direct", "relay", "none"} {
				if got[path] > 0 {
					parts = append(parts, fmt.Sprintf("%s %d", path, got[path]))
				}
			}
			p(" %s (want %s)%s |", strings.Join(parts, ", "), want, mark)
		}
		p("\n")
	}
	p("\n")
	if len(x.Off) > 0 {
		p("Off their required path at the end: %s.\n\n", strings.Join(x.Off, "; "))
	}
}
