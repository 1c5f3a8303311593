package coord_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/certmesh/certmesh/coord"
	"github.com/certmesh/certmesh/internal/wire"
)

// TestSnapshotAndDeltas: a watch starts with a snapshot of the others (not
// itself), then sees the others come, move, renew and go, never its own
// changes.
func TestSnapshotAndDeltas(t *testing.T) {
	f := newFixture(t)
	a, b, c := f.newDevice(t, "alpha"), f.newDevice(t, "beta"), f.newDevice(t, "gamma")
	pa, pb := a.publish("192.0.2.1:51820"), b.publish("192.0.2.2:51820", "[2001:db8::2]:51820")

	as := f.watch(t, a, "alpha", pa)
	if peers, _ := as.snapshot(t); len(peers) != 0 {
		t.Fatalf("alpha's snapshot: %d peers, want none (not itself)", len(peers))
	}
	bs := f.watch(t, b, "beta", pb)
	peers, _ := bs.snapshot(t)
	if len(peers) != 1 {
		t.Fatalf("beta's snapshot has %d peers, want alpha only", len(peers))
	}
	checkPeer(t, "beta snapshot", peers[string(a.id)], a, pa)
	as.wantUpsert(t, b, pb)

	// Join: both others are told, the newcomer's snapshot has both.
	pc := c.publish("192.0.2.3:51820")
	cs := f.watch(t, c, "gamma", pc)
	peers, _ = cs.snapshot(t)
	if len(peers) != 2 {
		t.Fatalf("gamma's snapshot has %d peers, want 2", len(peers))
	}
	checkPeer(t, "gamma snapshot", peers[string(a.id)], a, pa)
	checkPeer(t, "gamma snapshot", peers[string(b.id)], b, pb)
	if _, self := peers[string(c.id)]; self {
		t.Fatal("gamma's snapshot contains gamma")
	}
	as.wantUpsert(t, c, pc)
	bs.wantUpsert(t, c, pc)
	f.wantConnected(t, a.id, b.id, c.id)

	// Move: c publishes new endpoints; the others see an upsert, c does not.
	moved := c.publish("198.51.100.3:41641")
	publishOK(t, f, c.client, moved)
	as.wantUpsert(t, c, moved)
	bs.wantUpsert(t, c, moved)

	// Renew: c publishes its renewed certificate, over a connection made
	// with it; the watch opened with the old one stays.
	c2 := f.renew(t, c)
	renewed := c2.publish("198.51.100.3:41641")
	if bytes.Equal(renewed.Bundle.Machine, moved.Bundle.Machine) {
		t.Fatal("renewal produced the same certificate")
	}
	publishOK(t, f, c2.client, renewed)
	as.wantUpsert(t, c2, renewed)
	bs.wantUpsert(t, c2, renewed)
	f.sentinel(t, as, bs, cs) // c saw none of its own changes

	// A newcomer's snapshot has c's latest state.
	d := f.newDevice(t, "delta")
	ds := f.watch(t, d, "delta", d.publish())
	peers, _ = ds.snapshot(t)
	checkPeer(t, "delta snapshot", peers[string(c.id)], c2, renewed)
	for _, s := range []*stream{as, bs, cs} {
		s.wantUpsert(t, d, d.publish())
	}

	// Leave: c hangs up; the others are told, once.
	cs.close()
	for _, s := range []*stream{as, bs, ds} {
		s.wantRemove(t, c)
	}
	f.wantConnected(t, a.id, b.id, d.id)
	f.sentinel(t, as, bs, ds)

	// A publish without an open watch is refused, and relays nothing.
	r := f.postRefused(t, c2.client, wire.PathPublish, mustJSON(t, renewed))
	wantRefusal(t, "publish without a watch", r, http.StatusConflict, "no open watch")
	f.sentinel(t, as, bs, ds)
}

func publishOK(t *testing.T, f *fixture, client *http.Client, p wire.Publish) {
	t.Helper()
	if err := f.publish(client, mustJSON(t, p)); err != nil {
		t.Fatal(err)
	}
}

// publish sends a Publish body that must be accepted; safe in any goroutine.
func (f *fixture) publish(client *http.Client, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	resp, err := f.post(ctx, client, wire.PathPublish, body)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		data, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("publish: status %d: %s", resp.StatusCode, data)
	}
	return nil
}

// TestKeepAlive: an idle watch carries blank lines at the keep-alive
// interval, which the event reader skips.
func TestKeepAlive(t *testing.T) {
	f := newFixture(t, withOptions(func(o *coord.Options) { o.KeepAlive = 20 * time.Millisecond }))
	a := f.newDevice(t, "alpha")
	s := f.watchRaw(t, a.client, "alpha", mustJSON(t, a.publish()))
	br := bufio.NewReader(s.resp.Body)
	first, err := wire.DecodeEvent(bytes.TrimSuffix(readLine(t, br), []byte("\n")))
	if err != nil || first.Type != wire.EventSnapshot {
		t.Fatalf("first line: %v %v, want the snapshot", first, err)
	}
	for i := 0; i < 3; i++ {
		if l := readLine(t, br); string(l) != "\n" {
			t.Fatalf("idle stream line %q, want a blank keep-alive line", l)
		}
	}
	// Events still come through between keep-alives, and the reader agents
	// use skips the blank lines.
	if err := f.coord.SetDocument(wire.DocCheckpoint, []byte("cp")); err != nil {
		t.Fatal(err)
	}
	e, err := wire.NewEventReader(br).Next()
	if err != nil || e.Type != wire.EventDocument || string(e.Doc.Data) != "cp" {
		t.Fatalf("after keep-alives: %v %v, want the checkpoint", e, err)
	}
}

// TestEventsAreWellFormed: every line the coordinator writes decodes as
// one valid event with wire.DecodeEvent, and relayed peers carry the
// publisher's bundle byte for byte.
func TestEventsAreWellFormed(t *testing.T) {
	f := newFixture(t)
	a, b := f.newDevice(t, "alpha"), f.newDevice(t, "beta")
	as := f.watch(t, a, "alpha", a.publish())
	as.snapshot(t)
	s := f.watchRaw(t, b.client, "beta", mustJSON(t, b.publish("[2001:db8::1]:51820")))
	br := bufio.NewReader(s.resp.Body)
	line := readLine(t, br)
	if !bytes.HasSuffix(line, []byte("\n")) || bytes.Count(line, []byte("\n")) != 1 {
		t.Fatalf("snapshot line %q is not one line", line)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		t.Fatalf("snapshot line is not JSON: %v", err)
	}
	e, err := wire.DecodeEvent(bytes.TrimSuffix(line, []byte("\n")))
	if err != nil {
		t.Fatal(err)
	}
	if e.Type != wire.EventSnapshot || len(e.Peers) != 1 {
		t.Fatalf("got %s, want a snapshot of alpha", describe(e))
	}
	checkPeer(t, "beta", e.Peers[0], a, a.publish())
	as.wantUpsert(t, b, b.publish("[2001:db8::1]:51820"))
}
