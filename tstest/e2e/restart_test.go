package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/tstest/netns"
)

// restartGrace is the agents' --unlisted-grace in the restart test: longer
// than a restart takes, short enough to watch a peer that really left go.
const restartGrace = 20 * time.Second

// TestKernelServerRestartUnderTraffic: the data plane does not depend on
// the coordinator's memory, even when it crashes. Three kernel agents
// stream datagrams to each other (every ordered pair, every 20 ms) while
// certmesh-server is killed with SIGKILL and started again: not one
// datagram may be lost, no agent may remove a peer, and every agent's
// watch is back on its own. (The graceful SIGTERM restart runs on both
// backends: TestServerRestartUnderTraffic in tstest/meshlab. Before: SIGTERM
// cut every connection and each closing watch told the others its agent
// left; after any restart the first agent back got a snapshot without the
// others and dropped them as "not in snapshot".) Then an agent that really
// stops is still removed by the others, once the grace has passed and not
// before, and a revoked one at once.
func TestKernelServerRestartUnderTraffic(t *testing.T) {
	t.Parallel()
	m := newTestMesh(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if err := m.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a1", "a2", "a3"} {
		if _, err := m.AddAgentWith(ctx, name, AgentOptions{Args: []string{"--unlisted-grace", restartGrace.String()}}); err != nil {
			t.Fatal(err)
		}
	}
	agents := m.Agents()
	if err := m.WaitConverged(ctx, agents, false); err != nil {
		t.Fatal(err)
	}
	streams, err := MeshStreams(ctx, agents, 9100, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range streams {
		t.Cleanup(s.Stop)
	}

	for _, fault := range []struct {
		name string
		sig  syscall.Signal
	}{{"kill-9", syscall.SIGKILL}} {
		t.Run(fault.name, func(t *testing.T) {
			var r Restart
			loss, err := LossAcross(streams, 2*time.Second, func() (err error) {
				r, err = RestartServer(ctx, m, fault.sig, 2*time.Second)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: server down %v, all %d agents' watches back %v after it started; %d datagrams per stream, %d lost",
				fault.name, r.Down.Round(time.Millisecond), len(agents), r.Back.Round(time.Millisecond), loss.Sent, loss.Total())
			for name, lost := range loss.Lost {
				t.Errorf("%s: %d datagrams lost across the %s restart (first %v)", name, len(lost), fault.name, lost[:min(len(lost), 10)])
			}
			for _, a := range agents {
				if logs := Tail(a.LogPath(m), 1000); strings.Contains(logs, "peer removed") {
					t.Errorf("%s removed a peer across the restart:\n%s", a.Name, grep(logs, "peer removed", "no longer listed"))
				}
			}
		})
	}
	if t.Failed() {
		t.FailNow()
	}

	t.Run("left-after-grace", func(t *testing.T) {
		a1, a2, a3 := agents[0], agents[1], agents[2]
		if err := a3.Stop(); err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, restartGrace+30*time.Second)
		defer wcancel()
		// Both observers at once: each must be seen holding a3 as
		// unlisted before it removes it, and they remove it at about the
		// same time.
		var wg sync.WaitGroup
		for _, obs := range []*Agent{a1, a2} {
			wg.Go(func() {
				since, err := waitRemoved(wctx, obs, a3)
				if err != nil {
					t.Error(err)
					return
				}
				if held := time.Since(since); held < restartGrace-time.Second {
					t.Errorf("%s removed the stopped %s %v after the coordinator stopped listing it, before the %v grace", obs.Name, a3.Name, held.Round(time.Millisecond), restartGrace)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		if err := m.WaitGone(wctx, []*Agent{a1, a2}, a3); err != nil {
			t.Fatal(err)
		}
	})

	// A signed reason does not wait for the grace: the revoked a2 is gone
	// from a1 within seconds, although the coordinator's "left" for it
	// would be held for restartGrace.
	t.Run("revoked-at-once", func(t *testing.T) {
		a1, a2 := agents[0], agents[1]
		start := time.Now()
		if err := m.Revoke(ctx, a2); err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, restartGrace/3)
		defer wcancel()
		if err := m.WaitGone(wctx, []*Agent{a1}, a2); err != nil {
			t.Fatal(err)
		}
		t.Logf("revoked %s removed by %s after %v (grace %v)", a2.Name, a1.Name, time.Since(start).Round(time.Millisecond), restartGrace)
	})
}

// waitRemoved waits until obs no longer has gone as a peer and returns
// since when obs had held it as unlisted.
func waitRemoved(ctx context.Context, obs, gone *Agent) (time.Time, error) {
	var since time.Time
	err := netns.WaitFor(ctx, pollInterval, func() error {
		st, err := obs.Status(ctx)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(st.Peers, func(p agent.PeerStatus) bool { return p.DeviceID == gone.ID })
		if i < 0 {
			if since.IsZero() {
				return fmt.Errorf("%s dropped %s without holding it as unlisted first", obs.Name, gone.Name)
			}
			return nil
		}
		since = st.Peers[i].UnlistedSince
		return fmt.Errorf("%s still has %s (unlisted since %v)", obs.Name, gone.Name, since)
	})
	return since, err
}

// grep returns the lines of s containing any of words.
func grep(s string, words ...string) string {
	var out []string
	for l := range strings.Lines(s) {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, strings.TrimRight(l, "\n"))
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
