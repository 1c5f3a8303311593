package coord_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/coord"
	"github.com/certmesh/certmesh/internal/wire"
)

// TestBadPublishBodies: bodies that are not a publish message are refused
// with a clear error, on both endpoints, and nobody joins or changes.
func TestBadPublishBodies(t *testing.T) {
	f := newFixture(t)
	obs, a := f.newDevice(t, "observer"), f.newDevice(t, "alpha")
	obsS := f.watch(t, obs, "observer", obs.publish())
	obsS.snapshot(t)

	valid := string(mustJSON(t, a.publish()))
	tooMany := a.publish()
	for i := range wire.MaxEndpoints + 1 {
		tooMany.Endpoints = append(tooMany.Endpoints, netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(1000+i)))
	}
	bigAdv := a.publish()
	bigAdv.Advertisement = make([]byte, wire.MaxAdvertisementSize+1)
	huge := `{"bundle":{"machine":"` + strings.Repeat("A", wire.MaxRequestSize) + `"}}`
	cases := []struct {
		name, body string
		says       []string
	}{
		{"empty", "", []string{"not a valid publish message"}},
		{"garbage", "\x00\xffnot json at all", []string{"not a valid publish message"}},
		{"truncated", valid[:len(valid)/2], []string{"not a valid publish message"}},
		{"wrong shape", `[1,2,3]`, []string{"not a valid publish message"}},
		{"unknown field", strings.TrimSuffix(valid, "}") + `,"allowed_ips":["0.0.0.0/0"]}`, []string{"not a valid publish message", "allowed_ips"}},
		{"bad endpoint", `{"bundle":` + string(mustJSON(t, a.bundle.Wire())) + `,"endpoints":["not-an-address"]}`, []string{"not a valid publish message"}},
		{"oversized", huge, []string{"request body too large"}},
		{"no bundle", `{"endpoints":[]}`, []string{"publish refused", string(certs.ReasonMalformed)}},
		{"garbage DER", `{"bundle":{"machine":"` + "AAECAwQF" + `"}}`, []string{"publish refused", string(certs.ReasonMalformed)}},
		{"too many endpoints", string(mustJSON(t, tooMany)), []string{"publish refused", fmt.Sprintf("%d endpoints, at most %d allowed", wire.MaxEndpoints+1, wire.MaxEndpoints)}},
		{"oversized advertisement", string(mustJSON(t, bigAdv)), []string{"publish refused", fmt.Sprintf("advertisement of %d bytes, at most %d allowed", wire.MaxAdvertisementSize+1, wire.MaxAdvertisementSize)}},
	}
	for _, c := range cases {
		for _, path := range []string{wire.PathWatch, wire.PathPublish} {
			r := f.postRefused(t, a.client, path, []byte(c.body))
			wantRefusal(t, c.name+" "+path, r, http.StatusBadRequest, c.says...)
		}
	}
	f.sentinel(t, obsS)
	f.wantConnected(t, obs.id)

	// The same refusals once a is connected leave what a published as it was.
	pa := a.publish("192.0.2.7:51820")
	as := f.watch(t, a, "alpha", pa)
	as.snapshot(t)
	obsS.wantUpsert(t, a, pa)
	for _, c := range cases {
		r := f.postRefused(t, a.client, wire.PathPublish, []byte(c.body))
		wantRefusal(t, c.name+" (connected)", r, http.StatusBadRequest, c.says...)
	}
	f.sentinel(t, obsS, as)
	n := f.newDevice(t, "newcomer")
	ns := f.watch(t, n, "newcomer", n.publish())
	peers, _ := ns.snapshot(t)
	checkPeer(t, "newcomer snapshot", peers[string(a.id)], a, pa)

	// Only POST is served.
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.ts.URL+wire.PathWatch, nil)
	resp, err := a.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET watch: status %d, want 405", resp.StatusCode)
	}
}

// slowConsumer sets up a fast watcher and a slow one that never reads its
// stream, and broadcasts 1 MiB documents until the coordinator finds the
// slow one too slow: its HTTP/2 flow-control window and socket buffers fill
// within a few, then its queue of WatchBuffer events. The fast watcher
// reads each document before the next is sent, so it never has more than
// one queued and must never be found too slow.
func slowConsumer(t *testing.T) (f *fixture, fast, slow *device, fs *stream) {
	t.Helper()
	f = newFixture(t, withOptions(func(o *coord.Options) { o.WatchBuffer = 2 }))
	fast, slow = f.newDevice(t, "fast"), f.newDevice(t, "slow")
	fs = f.watch(t, fast, "fast", fast.publish())
	fs.snapshot(t)
	f.watchRaw(t, slow.client, "slow", mustJSON(t, slow.publish())) // never read
	fs.wantUpsert(t, slow, slow.publish())

	doc := bytes.Repeat([]byte{'d'}, 1<<20)
	sent := 0
	deadline := time.Now().Add(waitFor)
	for !f.logs.has("agent too slow", string(slow.id)) {
		if time.Now().After(deadline) {
			t.Fatalf("after %d documents of 1 MiB the slow watcher was never found too slow", sent)
		}
		sent++
		data := append(fmt.Appendf(nil, "%06d", sent), doc...)
		if err := f.coord.SetDocument(wire.DocPolicy, data); err != nil {
			t.Fatal(err)
		}
		fs.wantDocument(t, wire.DocPolicy, data)
	}
	t.Logf("slow watcher found too slow after %d documents of 1 MiB", sent)
	if f.logs.has("agent too slow", string(fast.id)) {
		t.Error("the fast watcher was found too slow")
	}
	return f, fast, slow, fs
}

// TestSlowConsumerDoesNotBlockOthers: a watcher that stops reading does
// not hold up broadcasts to the others, before or after its queue is full.
func TestSlowConsumerDoesNotBlockOthers(t *testing.T) {
	f, fast, slow, fs := slowConsumer(t)
	// next skips the slow one's removal, which may come at any point once
	// the coordinator disconnects it (TestSlowConsumerIsDisconnected).
	next := func() *wire.Event {
		for {
			e := fs.next(t)
			if e.Type != wire.EventRemove || e.Label != string(slow.id) {
				return e
			}
		}
	}
	// Changes keep reaching the fast watcher, SetDocument and joins return.
	for i := range 5 {
		data := fmt.Appendf(nil, "after %d", i)
		if err := f.coord.SetDocument(wire.DocCheckpoint, data); err != nil {
			t.Fatal(err)
		}
		if e := next(); e.Type != wire.EventDocument || !bytes.Equal(e.Doc.Data, data) {
			t.Fatalf("fast: got %s, want checkpoint %q", describe(e), data)
		}
	}
	n := f.newDevice(t, "newcomer")
	ns := f.watch(t, n, "newcomer", n.publish())
	ns.snapshot(t)
	if e := next(); e.Type != wire.EventUpsert || e.Peer.Label != string(n.id) {
		t.Fatalf("fast: got %s, want the newcomer", describe(e))
	}
	if f.logs.has("agent too slow", string(fast.id)) || f.logs.has("agent too slow", string(n.id)) {
		t.Error("a watcher that reads was found too slow")
	}
}

// TestSlowConsumerIsDisconnected: the watcher found too slow is
// disconnected: the others are told it left and newcomers no longer get it.
//
// Found by these tests and fixed: the handler of a
// watcher that does not read is blocked in Write/Flush (HTTP/2 flow
// control) when broadcastLocked closes m.done, never sees it, and the
// member stays in the map (coord/coord.go:208-213, coord/http.go:80-108).
func TestSlowConsumerIsDisconnected(t *testing.T) {
	f, fast, slow, fs := slowConsumer(t)
	fs.wantRemove(t, slow)
	f.wantConnected(t, fast.id)
	n := f.newDevice(t, "newcomer")
	ns := f.watch(t, n, "newcomer", n.publish())
	peers, _ := ns.snapshot(t)
	if _, ok := peers[string(slow.id)]; ok {
		t.Error("a newcomer's snapshot still lists the dropped slow watcher")
	}
}
