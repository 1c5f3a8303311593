package hostile_test

// Fixture parts for the freshness attacks (freshness_test.go,
// crlfetch_test.go): a CA listener that can be made unreachable, an
// agent clock that tests move forward instead of sleeping, and restarts.

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
)

// gatedCA is the fixture's CA on a listener of its own whose every request
// fails (the connection is dropped) while Down is set: a CA the agents
// enrolled through it can no longer reach, the coordinator still can.
type gatedCA struct {
	URL  string
	Down atomic.Bool
}

func (f *fixture) gatedCA(t *testing.T) *gatedCA {
	t.Helper()
	g := &gatedCA{}
	h := f.CA.Handler()
	g.URL = serveCA(t, f.CA, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.Down.Load() {
			panic(http.ErrAbortHandler)
		}
		h.ServeHTTP(w, r)
	}), nil)
	return g
}

// agentClock is an agent's Config.Now: real time plus an offset the test
// moves forward.
type agentClock struct{ offset atomic.Int64 }

func (c *agentClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// AdvanceTo moves the clock so that it reads at least t.
func (c *agentClock) AdvanceTo(t time.Time) {
	if d := time.Until(t); d > time.Duration(c.offset.Load()) {
		c.offset.Store(int64(d))
	}
}

// startVictim starts an agent against caURL, configured by edit, and makes
// it the victim (with the probe listener).
func (f *fixture) startVictim(t *testing.T, caURL, name string, edit func(*agent.Config)) *node {
	t.Helper()
	if edit == nil {
		edit = func(*agent.Config) {}
	}
	n := f.startAgent(t, caURL, name, edit)
	startListener(t, n)
	f.Victim = n
	return n
}

// restartVictim stops the victim, lets prepare change its state directory,
// and starts an agent on that directory again against caURL, configured by
// edit; that agent is the victim from then on.
func (f *fixture) restartVictim(t *testing.T, caURL string, prepare func(stateDir string), edit func(*agent.Config)) *node {
	t.Helper()
	old := f.Victim
	old.stop()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	select {
	case <-old.Conn.Done():
	case <-ctx.Done():
		t.Fatalf("the stopped victim's watch did not end")
	}
	if prepare != nil {
		prepare(old.StateDir)
	}
	return f.startVictim(t, caURL, old.Name, edit)
}

// waitDevicePeerGone waits until n's WireGuard device no longer holds key
// k, meanwhile calling meanwhile (the coordinator's lies) every 100 ms,
// and returns when it went, or fails once deadline passed.
func waitDevicePeerGone(t *testing.T, n *node, f *fixture, deadline time.Time, meanwhile func()) time.Time {
	t.Helper()
	for {
		if _, ok := devicePeer(t, n, f.Peer.Self.WireGuardKey); !ok {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("the revoked peer is still a WireGuard peer of %s at %s; status %s", n.Name,
				deadline.Format(time.TimeOnly), asJSON(waitStatus(t, n, "status", func(*agent.Status) bool { return true }).CRL))
		}
		if meanwhile != nil {
			meanwhile()
		}
		time.Sleep(100 * time.Millisecond)
	}
}
