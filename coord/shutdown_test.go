package coord_test

import (
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/certmesh/certmesh/internal/wire"
)

// TestShutdownEndsWatchesWithoutRemovals: a coordinator going away is not
// a peer leaving. Shutdown ends every watch cleanly, and no member hears
// that another left (agents hearing "left" would drop peers whose tunnels
// work, which is what took the mesh down on every restart). A watch
// opened afterwards is refused as unavailable, so that a graceful HTTP
// shutdown is not kept waiting by new streams.
func TestShutdownEndsWatchesWithoutRemovals(t *testing.T) {
	f := newFixture(t)
	a, b, c := f.newDevice(t, "alpha"), f.newDevice(t, "beta"), f.newDevice(t, "gamma")
	as := f.watch(t, a, "alpha", a.publish())
	as.snapshot(t)
	bs := f.watch(t, b, "beta", b.publish())
	bs.snapshot(t)
	as.wantUpsert(t, b, b.publish())
	cs := f.watch(t, c, "gamma", c.publish())
	cs.snapshot(t)
	as.wantUpsert(t, c, c.publish())
	bs.wantUpsert(t, c, c.publish())

	f.coord.Shutdown()
	for _, s := range []*stream{as, bs, cs} {
		rest, err := s.ended(t)
		if !errors.Is(err, io.EOF) {
			t.Errorf("%s: watch ended with %v at shutdown, want a clean end", s.name, err)
		}
		for _, e := range rest {
			t.Errorf("%s received %s at shutdown, want nothing", s.name, describe(e))
		}
	}
	if ids := f.coord.Connected(); len(ids) != 0 {
		t.Errorf("connected after shutdown: %v", ids)
	}
	r := f.postRefused(t, a.client, wire.PathWatch, mustJSON(t, a.publish()))
	wantRefusal(t, "watch during shutdown", r, http.StatusServiceUnavailable, "shutting down")
}
