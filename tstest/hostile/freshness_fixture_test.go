package hostile_test

// Fixture parts for the freshness attacks (freshness_test.go,
// crlfetch_test.go): a CA listener that can be made unreachable, and
// restarts. Tests move an agent's clock (internal/testclock) forward
// instead of sleeping.

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/certs"
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
func waitDevicePeerGone(t *testing.T, n *node, k certs.WireGuardKey, deadline time.Time, meanwhile func()) time.Time {
	t.Helper()
	for {
		if _, ok := devicePeer(t, n, k); !ok {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("the peer %s is still a WireGuard peer of %s at %s; status %s", k, n.Name,
				deadline.Format(time.TimeOnly), asJSON(waitStatus(t, n, "status", func(*agent.Status) bool { return true }).CRL))
		}
		if meanwhile != nil {
			meanwhile()
		}
		time.Sleep(100 * time.Millisecond)
	}
}
