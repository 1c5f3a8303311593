package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/certmesh/certmesh/tstest/netns"
)

// MeshStreams starts a datagram stream between every ordered pair of
// agents, to ports from base up, and waits until all flow. On an error the
// streams started are stopped.
func MeshStreams(ctx context.Context, agents []*Agent, base uint16, every time.Duration) ([]*UDPStream, error) {
	var streams []*UDPStream
	stopAll := func() {
		for _, s := range streams {
			s.Stop()
		}
	}
	port := base
	for _, src := range agents {
		for _, dst := range agents {
			if dst == src {
				continue
			}
			s, err := StartUDPStream(ctx, src.Name+"->"+dst.Name, src.Host, dst.Host, netip.AddrPortFrom(dst.V4(), port), every)
			if err != nil {
				stopAll()
				return nil, err
			}
			streams = append(streams, s)
			port++
		}
	}
	wctx, cancel := context.WithTimeout(ctx, FirstContactTimeout)
	defer cancel()
	for _, s := range streams {
		if err := s.WaitSteady(wctx, 25); err != nil {
			stopAll()
			return nil, err
		}
	}
	return streams, nil
}

// Loss is what streams lost across an event.
type Loss struct {
	Sent uint64              // datagrams sent per stream (the most of any)
	Lost map[string][]uint64 // stream → sequence numbers that never arrived
}

// Total is the number of datagrams lost over all streams.
func (l Loss) Total() int {
	n := 0
	for _, s := range l.Lost {
		n += len(s)
	}
	return n
}

// LossAcross runs event while streams flow and counts the datagrams lost
// from just before it started until settle after it returned (plus a
// second for the last ones in flight).
func LossAcross(streams []*UDPStream, settle time.Duration, event func() error) (Loss, error) {
	from := make([]uint64, len(streams))
	for i, s := range streams {
		sent, _, _ := s.Snapshot()
		from[i] = sent + 1
	}
	if err := event(); err != nil {
		return Loss{}, err
	}
	time.Sleep(settle) // traffic after the event
	to := make([]uint64, len(streams))
	for i, s := range streams {
		to[i], _, _ = s.Snapshot()
	}
	time.Sleep(time.Second) // the last datagrams in flight
	l := Loss{Lost: map[string][]uint64{}}
	for i, s := range streams {
		l.Sent = max(l.Sent, to[i]-from[i]+1)
		if lost := s.Lost(from[i], to[i]); len(lost) > 0 {
			l.Lost[s.Name] = lost
		}
	}
	return l, nil
}

// Restart is what one server restart took.
type Restart struct {
	Down time.Duration // from the signal until the new server answered
	// Back is from starting the new server until the last running agent's
	// watch was open on it and no agent held a peer as unlisted any more.
	Back time.Duration
}

// RestartServer stops the server with sig (see [Mesh.StopServer]), keeps
// it down for pause, starts it again and waits until every running agent
// is back: its watch opened on the new server, all its peers held and
// listed again.
func RestartServer(ctx context.Context, m *Mesh, sig syscall.Signal, pause time.Duration) (Restart, error) {
	stopped := time.Now()
	if err := m.StopServer(sig); err != nil {
		return Restart{}, err
	}
	time.Sleep(pause) // the outage itself
	started := time.Now()
	if err := m.RunServer(ctx); err != nil {
		return Restart{}, err
	}
	r := Restart{Down: time.Since(stopped)}
	var running []*Agent
	for _, a := range m.Agents() {
		if a.Proc != nil {
			select {
			case <-a.Proc.Done():
			default:
				running = append(running, a)
			}
		}
	}
	var last time.Time
	for _, a := range running {
		since, err := waitBack(ctx, a, stopped, len(running)-1)
		if err != nil {
			return r, err
		}
		if since.After(last) {
			last = since
		}
	}
	r.Back = last.Sub(started)
	return r, nil
}

// waitBack waits until a's watch was opened after t0 and a holds its n
// peers, all listed by the coordinator again; it returns when the watch
// opened.
func waitBack(ctx context.Context, a *Agent, t0 time.Time, n int) (time.Time, error) {
	var since time.Time
	err := netns.WaitFor(ctx, pollInterval, func() error {
		st, err := a.Status(ctx)
		if err != nil {
			return err
		}
		c := st.Coordinator
		if !c.Connected || !c.ConnectedSince.After(t0) {
			return fmt.Errorf("%s: watch not back yet (connected %v since %v): %s", a.Name, c.Connected, c.ConnectedSince, c.LastError)
		}
		if len(st.Peers) != n {
			return fmt.Errorf("%s has %d peers, want %d", a.Name, len(st.Peers), n)
		}
		for _, p := range st.Peers {
			if !p.UnlistedSince.IsZero() {
				return fmt.Errorf("%s: peer %s not listed again yet", a.Name, p.Hostname)
			}
		}
		since = c.ConnectedSince
		return nil
	})
	if err != nil {
		return since, fmt.Errorf("e2e: %s not back after the restart: %w", a.Name, err)
	}
	return since, nil
}
