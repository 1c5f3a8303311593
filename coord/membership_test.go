package coord_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/testca"
)

// TestSecondWatchReplacesFirst: a device that watches again (a restarted
// agent, a renewed certificate) replaces its earlier watch: the old stream
// ends, the others see one upsert and no removal, and the old watch's
// departure does not remove the new one.
func TestSecondWatchReplacesFirst(t *testing.T) {
	f := newFixture(t)
	obs, a := f.newDevice(t, "observer"), f.newDevice(t, "alpha")
	obsS := f.watch(t, obs, "observer", obs.publish("192.0.2.1:51820"))
	obsS.snapshot(t)
	p1 := a.publish("192.0.2.2:51820")
	first := f.watch(t, a, "alpha-1", p1)
	first.snapshot(t)
	obsS.wantUpsert(t, a, p1)

	a2 := f.renew(t, a)
	p2 := a2.publish("198.51.100.2:51820")
	second := f.watch(t, a2, "alpha-2", p2)
	peers, _ := second.snapshot(t)
	if len(peers) != 1 {
		t.Fatalf("second watch's snapshot has %d peers, want the observer only", len(peers))
	}
	if _, ok := peers[string(obs.id)]; !ok {
		t.Fatal("second watch's snapshot lacks the observer")
	}

	// The first stream ends, cleanly, with nothing relayed after the
	// replacement.
	rest, err := first.ended(t)
	if !errors.Is(err, io.EOF) {
		t.Errorf("first watch ended with %v, want a clean end", err)
	}
	for _, e := range rest {
		t.Errorf("first watch received %s after it was replaced", describe(e))
	}

	obsS.wantUpsert(t, a2, p2)
	f.sentinel(t, obsS, second) // no removal of alpha after the old watch left
	f.wantConnected(t, obs.id, a.id)

	second.close()
	obsS.wantRemove(t, a)
	f.wantConnected(t, obs.id)
}

// TestKick: Kick ends a device's watch and tells the others at once; an
// unknown device is a no-op.
func TestKick(t *testing.T) {
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

	f.coord.Kick(b.id)
	as.wantRemove(t, b)
	cs.wantRemove(t, b)
	rest, err := bs.ended(t)
	if !errors.Is(err, io.EOF) {
		t.Errorf("kicked watch ended with %v, want a clean end", err)
	}
	for _, e := range rest {
		t.Errorf("kicked device received %s", describe(e))
	}
	f.wantConnected(t, a.id, c.id)
	if !f.logs.has("device disconnected", string(b.id)) {
		t.Error("Kick was not logged")
	}

	f.coord.Kick(b.id)                  // again
	f.coord.Kick(testca.NewDeviceID(t)) // never seen
	f.sentinel(t, as, cs)
	f.wantConnected(t, a.id, c.id)
}

// TestConcurrentMembership: many agents join, publish and leave at once;
// at the end every remaining watcher's view (snapshot plus deltas) is
// exactly the remaining members. Run with -race.
func TestConcurrentMembership(t *testing.T) {
	f := newFixture(t)
	const n = 12
	devs := make([]*device, n)
	for i := range devs {
		devs[i] = f.newDevice(t, fmt.Sprintf("host%d", i))
	}
	streams := make([]*stream, n)
	errs := make([]error, n)
	bodies := make([][]byte, n)
	moves := make([][]byte, n)
	for i, d := range devs {
		bodies[i] = mustJSON(t, d.publish(fmt.Sprintf("192.0.2.%d:51820", i+1)))
		moves[i] = mustJSON(t, d.publish(fmt.Sprintf("198.51.100.%d:51820", i+1)))
	}
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Go(func() { streams[i], errs[i] = f.openWatch(d.client, string(d.prof.Hostname), bodies[i]) })
	}
	wg.Wait()
	for i, s := range streams {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		t.Cleanup(s.close)
		go s.read()
	}
	views := make([]map[string]wire.Peer, n)
	for i, s := range streams {
		views[i], _ = s.snapshot(t)
	}
	// The odd ones move, then leave, all at once.
	for i := 1; i < n; i += 2 {
		wg.Go(func() {
			errs[i] = f.publish(devs[i].client, moves[i])
			streams[i].close()
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var remaining []certs.DeviceID
	for i := 0; i < n; i += 2 {
		remaining = append(remaining, devs[i].id)
	}
	f.wantConnected(t, remaining...)

	// Apply each even watcher's events up to a sentinel.
	data := []byte("sentinel")
	if err := f.coord.SetDocument(wire.DocCheckpoint, data); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 2 {
		view := views[i]
		for {
			e := streams[i].next(t)
			if e.Type == wire.EventDocument && bytes.Equal(e.Doc.Data, data) {
				break
			}
			switch e.Type {
			case wire.EventUpsert:
				if e.Peer.Label == string(devs[i].id) {
					t.Fatalf("watcher %d received its own upsert", i)
				}
				view[e.Peer.Label] = *e.Peer
			case wire.EventRemove:
				delete(view, e.Label)
			default:
				t.Fatalf("watcher %d: unexpected %s", i, describe(e))
			}
		}
		if len(view) != len(remaining)-1 {
			t.Errorf("watcher %d sees %d peers, want %d", i, len(view), len(remaining)-1)
		}
		for j := 0; j < n; j += 2 {
			if j == i {
				continue
			}
			p, ok := view[string(devs[j].id)]
			if !ok {
				t.Errorf("watcher %d does not see %d", i, j)
				continue
			}
			checkPeer(t, fmt.Sprintf("watcher %d", i), p, devs[j], devs[j].publish(fmt.Sprintf("192.0.2.%d:51820", j+1)))
		}
	}
}
