package main

// The faults part of the report: datagrams lost across the routine events
// a mesh lives through, measured through the real binaries in network
// namespaces (tstest/e2e): one renewal cycle of every agent, a graceful
// restart of certmesh-server (SIGTERM), a crash of it (SIGKILL), and the
// time until every agent is back on the restarted server. It needs root;
// `-only faults` runs it by itself and replaces just its section of an
// existing report.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/netns"
)

const (
	faultsHeading = "## Faults under traffic"
	faultAgents   = 3
	faultEvery    = 20 * time.Millisecond // one datagram per stream
	faultCertLife = 2 * time.Minute       // the shortest the CA issues: renewed after about 80 s
	faultPause    = 2 * time.Second       // how long the server stays down
	faultSettle   = 2 * time.Second       // traffic counted after each event
)

// FaultResult is one event's cost.
type FaultResult struct {
	Event string
	Sent  uint64 // datagrams per stream across the event
	Lost  int    // over all streams
	// Down and Back, for restarts: from the signal until the new server
	// answered; from its start until the last agent's watch was open on
	// it with all its peers listed again.
	Down, Back time.Duration
}

// Faults is the measurement's outcome.
type Faults struct {
	At      time.Time
	Elapsed time.Duration
	Load    [2]string // load average before and after (only with -only faults)
	Streams int
	Results []FaultResult
}

// runFaults builds a mesh of faultAgents kernel agents on a fresh network
// and measures each event in turn, under streams between every ordered
// pair of agents.
func runFaults(ctx context.Context, log *slog.Logger, bin *e2e.Binaries, work string) (f *Faults, err error) {
	f = &Faults{At: time.Now()}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	n, err := freshNetwork(cctx, log)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, n.Close()) }()
	m := e2e.New(n, e2e.Options{Bin: bin, Dir: filepath.Join(work, "faults"), Logger: log})
	if err := m.InitServer(cctx); err != nil {
		return nil, err
	}
	if err := m.PatchServerConfig(map[string]any{"machine_cert_lifetime": faultCertLife.String()}); err != nil {
		return nil, err
	}
	if err := m.RunServer(cctx); err != nil {
		return nil, err
	}
	for i := 1; i <= faultAgents; i++ {
		if _, err := m.AddAgent(cctx, fmt.Sprintf("a%d", i)); err != nil {
			return nil, fmt.Errorf("%w%s", err, meshLogs(m))
		}
	}
	agents := m.Agents()
	if err := m.WaitConverged(cctx, agents, false); err != nil {
		return nil, fmt.Errorf("%w%s", err, meshLogs(m))
	}
	streams, err := e2e.MeshStreams(ctx, agents, 9200, faultEvery)
	if err != nil {
		return nil, fmt.Errorf("%w%s", err, meshLogs(m))
	}
	defer func() {
		for _, s := range streams {
			s.Stop()
		}
	}()
	f.Streams = len(streams)

	log.Info("netbench: faults: waiting for every agent to renew under traffic", "cert_life", faultCertLife)
	loss, err := e2e.LossAcross(streams, faultSettle, func() error { return renewedAll(ctx, agents) })
	if err != nil {
		return nil, fmt.Errorf("%w%s", err, meshLogs(m))
	}
	f.Results = append(f.Results, FaultResult{Event: "renewal cycle (every agent renews once)", Sent: loss.Sent, Lost: loss.Total()})
	for _, ev := range []struct {
		name string
		sig  syscall.Signal
	}{{"graceful restart (SIGTERM)", syscall.SIGTERM}, {"crash and restart (SIGKILL)", syscall.SIGKILL}} {
		log.Info("netbench: faults: restarting certmesh-server under traffic", "how", ev.name)
		var r e2e.Restart
		loss, err := e2e.LossAcross(streams, faultSettle, func() (err error) {
			r, err = e2e.RestartServer(ctx, m, ev.sig, faultPause)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("%w%s", err, meshLogs(m))
		}
		f.Results = append(f.Results, FaultResult{Event: ev.name, Sent: loss.Sent, Lost: loss.Total(), Down: r.Down, Back: r.Back})
	}
	f.Elapsed = time.Since(f.At)
	return f, nil
}

// renewedAll waits until every agent holds a machine certificate other
// than the one it held when called.
func renewedAll(ctx context.Context, agents []*e2e.Agent) error {
	first := map[string]string{}
	for _, a := range agents {
		st, err := a.Status(ctx)
		if err != nil {
			return err
		}
		first[a.Name] = st.Self.CertSerial
	}
	wctx, cancel := context.WithTimeout(ctx, 2*faultCertLife)
	defer cancel()
	return netns.WaitFor(wctx, 200*time.Millisecond, func() error {
		var waiting []string
		for _, a := range agents {
			st, err := a.Status(wctx)
			if err != nil {
				return err
			}
			if st.Self.CertSerial == first[a.Name] {
				waiting = append(waiting, a.Name)
			}
		}
		if len(waiting) > 0 {
			return fmt.Errorf("not renewed yet: %s", strings.Join(waiting, ", "))
		}
		return nil
	})
}

// markdown writes the section.
func (f *Faults) markdown(p func(string, ...any)) {
	p("%s\n\n", faultsHeading)
	p("Measured on %s UTC (%s).", f.At.UTC().Format("2006-01-02 15:04"), f.Elapsed.Round(time.Second))
	if f.Load[0] != "" {
		p(" Run on its own with `go run ./tstest/bench/netbench -only faults`, which replaces only this section; the machine is the one above, load average (1/5/15 min) %s before, %s after.", f.Load[0], f.Load[1])
	}
	p(" certmesh-server and %d kernel-mode agents, the real binaries with their default settings except %s machine certificates (renewed after about two thirds of that), each in its own network namespace. ", faultAgents, faultCertLife)
	p("Through the tunnels, a numbered UDP datagram every %s on each of the %d ordered pairs of agents. ", faultEvery, f.Streams)
	p("Lost counts the sequence numbers sent from just before the event until %s after it ended that never arrived (target 0). ", faultSettle)
	p("For the restarts the server stays down %s; all agents back is from starting the new server until the last agent's watch is open on it and every agent holds all its peers as listed again.\n\n", faultPause)
	p("| event | datagrams per stream | lost (all streams) | server down | all agents back |\n|---|--:|--:|--:|--:|\n")
	for _, r := range f.Results {
		down, back := "–", "–"
		if r.Down > 0 {
			down, back = r.Down.Round(10*time.Millisecond).String(), r.Back.Round(10*time.Millisecond).String()
		}
		p("| %s | %s | **%d** | %s | %s |\n", r.Event, num(float64(r.Sent)), r.Lost, down, back)
	}
	p("\n")
}

// runOnlyFaults measures the faults and replaces that section of the
// report at out.
func runOnlyFaults(ctx context.Context, log *slog.Logger, out string, keep bool) error {
	return runOnlySection(ctx, log, out, keep, "faults", faultsHeading,
		func(ctx context.Context, bin *e2e.Binaries, work string) (func(func(string, ...any)), error) {
			before := loadAvg()
			f, err := runFaults(ctx, log, bin, work)
			if err != nil {
				return nil, err
			}
			f.Load = [2]string{before, loadAvg()}
			return f.markdown, nil
		})
}
