package main

// Time from both agents admitted to the first packet: for each scenario
// (a pair of placements) and repetition, two fresh hosts (each NATed one
// behind a fresh router of its own), two fresh agents enrolled on them,
// the second started while the first runs.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/netns"
)

// connectScenario is a pair of placements whose agents are connected
// afresh in every repetition.
type connectScenario struct {
	Key   string // host name part
	Title string
	At    e2e.Placement
	Want  string // the path issue 14 requires
	Goal  time.Duration
}

var connectScenarios = []connectScenario{
	{"pub", "public ↔ public", e2e.Public, "direct", goalDirect},
	{"eim", "EIM NAT ↔ EIM NAT (hole punched)", e2e.EIMNAT, "direct", goalDirect},
	{"sym", "symmetric NAT ↔ symmetric NAT (relay, UDP)", e2e.SymmetricNAT, "relay", goalRelay},
	{"blk", "UDP blocked ↔ UDP blocked (relay, TLS over TCP)", e2e.UDPBlocked, "relay", goalRelay},
}

// ConnectRun is one repetition of a scenario. The durations are from
// both agents admitted (the later of the two moments at which each
// agent's status first listed the other as a verified peer, polled every
// 5 ms).
type ConnectRun struct {
	Admit    time.Duration // from starting the second agent to both admitted
	First    time.Duration // to the first datagram from the first agent to the second
	BothWays time.Duration // to the first datagram in each direction (the later)
	Settled  time.Duration // to both statuses showing the required path
	Path     [2]string     // the path each side's status showed at the end
	Late     bool          // the streams started only after both were admitted
	Never    bool          // a direction had no datagram within natDeadline
}

// ConnectResult is a scenario's repetitions.
type ConnectResult struct {
	Scenario connectScenario
	Runs     []ConnectRun
}

// measureConnects runs reps repetitions of every scenario, interleaved
// (the order rotating from repetition to repetition).
func measureConnects(ctx context.Context, log *slog.Logger, m *e2e.Mesh, reps int) ([]*ConnectResult, error) {
	res := make([]*ConnectResult, len(connectScenarios))
	for i, sc := range connectScenarios {
		res[i] = &ConnectResult{Scenario: sc}
	}
	for rep := range reps {
		for i := range res {
			cr := res[(rep+i)%len(res)]
			run, err := connectOnce(ctx, m, cr.Scenario, rep)
			if err != nil {
				return nil, fmt.Errorf("%s, repetition %d: %w", cr.Scenario.Title, rep+1, err)
			}
			cr.Runs = append(cr.Runs, run)
			log.Info("netbench: paths: first packet", "pair", cr.Scenario.Title, "rep", rep+1, "of", reps,
				"admitted_after", run.Admit.Round(time.Millisecond), "first", run.First.Round(time.Millisecond),
				"both_ways", run.BothWays.Round(time.Millisecond), "settled", run.Settled.Round(time.Millisecond),
				"path", run.Path, "streams_late", run.Late)
		}
	}
	return res, nil
}

// connectOnce measures one repetition: it starts the first agent, then
// the second, watching both agents' local APIs from the moment the second
// starts; as soon as the second has its overlay address, datagram streams
// start both ways. Both agents are stopped and revoked at the end, so that
// later agents do not list them.
func connectOnce(ctx context.Context, m *e2e.Mesh, sc connectScenario, rep int) (run ConnectRun, err error) {
	var hosts [2]*netns.Host
	for i := range hosts {
		if hosts[i], err = m.Place(ctx, fmt.Sprintf("c%d%s%d", rep+1, sc.Key, i+1), sc.At); err != nil {
			return run, err
		}
	}
	opts := e2e.AgentOptions{Args: m.STUNArgs()}
	a, err := m.StartAgentWith(ctx, hosts[0], opts)
	if err != nil {
		return run, err
	}
	var b *e2e.Agent
	var streams []*e2e.UDPStream
	defer func() {
		for _, s := range streams {
			s.Stop()
		}
		for _, x := range []*e2e.Agent{a, b} {
			if x == nil {
				continue
			}
			err = errors.Join(err, x.Stop())
			if x.ID != "" {
				err = errors.Join(err, m.Revoke(context.WithoutCancel(ctx), x))
			}
		}
	}()

	bName := hosts[1].Name
	bAPI := agent.NewClient(m.AgentStateDir(bName))
	wctx, cancel := context.WithTimeout(ctx, natDeadline)
	defer cancel()
	start := time.Now()
	var (
		wg        sync.WaitGroup
		startErr  error
		pollErr   [3]error
		admitted  [2]time.Time
		streamsAt time.Time
	)
	wg.Go(func() {
		if b, startErr = m.StartAgentWith(wctx, hosts[1], opts); startErr != nil {
			cancel() // the pollers would wait for nothing
		}
	})
	wg.Go(func() { admitted[0], pollErr[0] = admittedAt(wctx, a.Status, bName) })
	wg.Go(func() { admitted[1], pollErr[1] = admittedAt(wctx, bAPI.Status, a.Name) })
	wg.Go(func() {
		// The streams start as soon as the second agent has its overlay
		// address (normally before either admission).
		var self agent.SelfStatus
		if pollErr[2] = netns.WaitFor(wctx, 5*time.Millisecond, func() error {
			st, err := bAPI.Status(wctx)
			if err != nil {
				return err
			}
			if self = st.Self; len(self.Addresses) == 0 {
				return errors.New("not enrolled yet")
			}
			return nil
		}); pollErr[2] != nil {
			return
		}
		if streams, pollErr[2] = pairStreams(wctx, a, hosts[1], self.Addresses, 9300); pollErr[2] == nil {
			streamsAt = time.Now()
		}
	})
	wg.Wait()
	if err := errors.Join(startErr, pollErr[0], pollErr[1], pollErr[2]); err != nil {
		return run, err
	}
	t0 := admitted[0]
	if admitted[1].After(t0) {
		t0 = admitted[1]
	}
	run.Admit, run.Late = t0.Sub(start), streamsAt.After(t0)
	// The first datagrams and the required path in status, watched at
	// once from t0.
	var (
		first   [2]time.Time
		errs    [2]error
		settled time.Time
	)
	wg.Go(func() {
		errs[0] = poll(ctx, 5*time.Millisecond, "the first datagram each way", func() error {
			for i, s := range streams {
				if first[i] = s.FirstArrival(); first[i].IsZero() {
					return fmt.Errorf("nothing arrived on %s yet", s.Name)
				}
			}
			return nil
		})
	})
	wg.Go(func() {
		if poll(ctx, 20*time.Millisecond, "the required path on both sides", func() error {
			got, err := pathsOf(ctx, a, b)
			if err == nil && (got[0] != sc.Want || got[1] != sc.Want) {
				err = fmt.Errorf("paths %v, want %q", got, sc.Want)
			}
			return err
		}) == nil {
			settled = time.Now() // a path that never settles is a finding, not an error
		}
	})
	wg.Wait()
	switch {
	case errs[0] != nil && ctx.Err() != nil:
		return run, errs[0]
	case errs[0] != nil:
		run.Never = true // no packet within natDeadline: a finding, not an error
	default:
		run.First = first[0].Sub(t0)
		run.BothWays = max(first[0].Sub(t0), first[1].Sub(t0))
	}
	if !settled.IsZero() {
		run.Settled = max(settled.Sub(t0), time.Nanosecond)
	}
	run.Path, err = pathsOf(ctx, a, b)
	return run, err
}

// pathTo is the path st shows for the peer on host name: "none" for no
// such peer or no path.
func pathTo(st *agent.Status, name string) string {
	if p, err := meshlab.PeerNamed(st, name); err == nil && p.Path != "" {
		return p.Path
	}
	return "none"
}

// pathsOf returns the path a's status shows for b, and b's for a.
func pathsOf(ctx context.Context, a, b *e2e.Agent) (paths [2]string, err error) {
	for i, pair := range [][2]*e2e.Agent{{a, b}, {b, a}} {
		st, err := pair[0].Status(ctx)
		if err != nil {
			return paths, err
		}
		p, err := meshlab.PeerNamed(st, pair[1].Name)
		if err != nil {
			return paths, err
		}
		paths[i] = p.Path
	}
	return paths, nil
}

// admittedAt polls status every 5 ms until it lists peer as verified and
// returns when it first did.
func admittedAt(ctx context.Context, status func(context.Context) (*agent.Status, error), peer string) (time.Time, error) {
	var at time.Time
	err := netns.WaitFor(ctx, 5*time.Millisecond, func() error {
		st, err := status(ctx)
		if err != nil {
			return err
		}
		p, err := meshlab.PeerNamed(st, peer)
		if err != nil {
			return err
		}
		if !p.Verified {
			return fmt.Errorf("%s not verified yet", peer)
		}
		at = time.Now()
		return nil
	})
	if err != nil {
		return at, fmt.Errorf("waiting for %s to be admitted: %w", peer, err)
	}
	return at, nil
}

// pairStreams starts a datagram stream from a to the agent on h (at its
// overlay addresses) and one back, on port and port+1: retried for a
// moment, as h's TUN may not carry its address yet.
func pairStreams(ctx context.Context, a *e2e.Agent, h *netns.Host, addrs []netip.Addr, port uint16) ([]*e2e.UDPStream, error) {
	var dst netip.Addr
	for _, ip := range addrs {
		if ip.Is4() {
			dst = ip
		}
	}
	var out []*e2e.UDPStream
	err := netns.WaitFor(ctx, 5*time.Millisecond, func() error {
		for _, s := range out {
			s.Stop()
		}
		out = nil
		there, err := e2e.StartUDPStream(ctx, a.Name+"->"+h.Name, a.Host, h, netip.AddrPortFrom(dst, port), natEvery)
		if err != nil {
			return err
		}
		out = append(out, there)
		back, err := e2e.StartUDPStream(ctx, h.Name+"->"+a.Name, h, a.Host, netip.AddrPortFrom(a.V4(), port+1), natEvery)
		if err != nil {
			return err
		}
		out = append(out, back)
		return nil
	})
	if err != nil {
		for _, s := range out {
			s.Stop()
		}
		return nil, err
	}
	return out, nil
}
