package coord_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/coord"
	"github.com/certmesh/certmesh/internal/testca"
	"github.com/certmesh/certmesh/internal/wire"
)

// TestClientCertificateRequired: a watch or publish without a machine
// certificate that chains to the root, is current and has the machine
// profile is refused with 403 and nobody joins. With the production TLS
// configuration the handshake already refuses a certificate the root pool
// does not verify; with a listener that lets any certificate through, the
// coordinator's own check must refuse the same ones.
func TestClientCertificateRequired(t *testing.T) {
	for _, mode := range []struct {
		name string
		mode tlsMode
	}{{"production-tls", productionTLS}, {"unverified-tls", unverifiedTLS}} {
		t.Run(mode.name, func(t *testing.T) {
			f := newFixture(t, withTLS(mode.mode))
			obs := f.newDevice(t, "observer")
			obsS := f.watch(t, obs, "observer", obs.publish("192.0.2.1:51820"))
			if peers, _ := obsS.snapshot(t); len(peers) != 0 {
				t.Fatalf("first watcher's snapshot has %d peers", len(peers))
			}

			other := testca.New(t, td) // another CA, even of the same trust domain
			now := time.Now()
			victim := f.newDevice(t, "victim") // a valid bundle someone else presents
			srv := f.ca.IssueServer(t)         // chains to the root, client-auth EKU, not a machine
			srvCert := &tls.Certificate{Certificate: [][]byte{srv.Cert.Raw, f.ca.Intermediate().Cert.Raw}, PrivateKey: srv.Key}
			type tc struct {
				name       string
				client     *http.Client
				body       wire.Publish
				says       []string // what the coordinator's 403 says
				tlsRefuses bool     // the production handshake refuses the certificate
			}
			dev := func(name string, d *device, says string, tlsRefuses bool) tc {
				return tc{name, d.client, d.publish("192.0.2.9:51820"), []string{"client certificate refused", says}, tlsRefuses}
			}
			cases := []tc{
				{"none", f.client(t, nil), victim.publish("192.0.2.9:51820"), []string{"client certificate refused: no client certificate"}, false},
				dev("another CA", f.deviceFrom(t, other, other.NewProfile(t, "intruder")), string(certs.ReasonUntrusted), true),
				dev("expired", f.newDevice(t, "stale", testca.WithValidity(now.Add(-48*time.Hour), now.Add(-time.Hour))), string(certs.ReasonExpired), true),
				dev("not yet valid", f.newDevice(t, "early", testca.WithValidity(now.Add(time.Hour), now.Add(25*time.Hour))), string(certs.ReasonNotYetValid), true),
				dev("self-signed", f.newDevice(t, "selfie", testca.WithSelfSigned()), "", true),
				{"server certificate", f.client(t, srvCert), victim.publish("192.0.2.9:51820"), []string{"client certificate refused"}, false},
			}
			for _, c := range cases {
				for _, path := range []string{wire.PathWatch, wire.PathPublish} {
					what := c.name + " " + path
					r := f.postRefused(t, c.client, path, mustJSON(t, c.body))
					if mode.mode == productionTLS && c.tlsRefuses {
						if r.status != 0 && r.status != http.StatusForbidden {
							t.Errorf("%s: status %d (%s), want the handshake or a 403 to refuse it", what, r.status, r.msg)
						}
						continue
					}
					wantRefusal(t, what, r, http.StatusForbidden, c.says...)
				}
			}
			// None of them joined or was relayed.
			f.sentinel(t, obsS)
			f.wantConnected(t, obs.id)
		})
	}
}

// TestPublishOnlyOwnBundle: a device may publish only its own, currently
// valid bundle, in the watch and in later publishes; a refused publish
// changes nothing the others see.
func TestPublishOnlyOwnBundle(t *testing.T) {
	f := newFixture(t)
	a, b := f.newDevice(t, "alpha"), f.newDevice(t, "beta")
	pa := a.publish("192.0.2.1:51820")
	as := f.watch(t, a, "alpha", pa)
	as.snapshot(t)

	// b opens its watch with a's bundle.
	forged := a.publish("203.0.113.66:51820")
	r := f.postRefused(t, b.client, wire.PathWatch, mustJSON(t, forged))
	wantRefusal(t, "watch with another's bundle", r, http.StatusBadRequest,
		"publish refused", "published bundle is for device "+string(a.id), "connection is from "+string(b.id))
	f.sentinel(t, as)
	f.wantConnected(t, a.id)

	// b joins properly, then tries to publish a's bundle.
	pb := b.publish("192.0.2.2:51820")
	bs := f.watch(t, b, "beta", pb)
	peers, _ := bs.snapshot(t)
	checkPeer(t, "beta snapshot", peers[string(a.id)], a, pa)
	as.wantUpsert(t, b, pb)
	r = f.postRefused(t, b.client, wire.PathPublish, mustJSON(t, forged))
	wantRefusal(t, "publish of another's bundle", r, http.StatusBadRequest, "publish refused", "is for device "+string(a.id))

	// Its own bundle, but one that is no longer valid (a replayed old
	// certificate), is refused too.
	now := time.Now()
	old, _ := f.ca.IssueMachine(t, b.prof, testca.WithValidity(now.Add(-48*time.Hour), now.Add(-time.Hour)))
	r = f.postRefused(t, b.client, wire.PathPublish, mustJSON(t, wire.Publish{Bundle: old.Wire()}))
	wantRefusal(t, "publish of an expired own bundle", r, http.StatusBadRequest, "publish refused", string(certs.ReasonExpired))

	// A bundle of another CA for b's own device ID.
	other := testca.New(t, td)
	alien, _ := other.IssueMachine(t, b.prof)
	r = f.postRefused(t, b.client, wire.PathPublish, mustJSON(t, wire.Publish{Bundle: alien.Wire()}))
	wantRefusal(t, "publish of another CA's bundle", r, http.StatusBadRequest, "publish refused", string(certs.ReasonUntrusted))

	// Nothing reached a, and a is still relayed as it published itself.
	f.sentinel(t, as, bs)
	c := f.newDevice(t, "gamma")
	cs := f.watch(t, c, "gamma", c.publish())
	peers, _ = cs.snapshot(t)
	checkPeer(t, "gamma snapshot", peers[string(a.id)], a, pa)
	checkPeer(t, "gamma snapshot", peers[string(b.id)], b, pb)
}

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

// TestAuthorize: a device the Authorize hook refuses can neither watch nor
// publish, is told why, and nobody hears of it.
func TestAuthorize(t *testing.T) {
	var (
		mu      sync.Mutex
		refused = map[certs.DeviceID]bool{}
		asked   []certs.DeviceID
	)
	f := newFixture(t, withOptions(func(o *coord.Options) {
		o.Authorize = func(_ context.Context, id certs.DeviceID) error {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, id)
			if refused[id] {
				return fmt.Errorf("device %s is revoked", id)
			}
			return nil
		}
	}))
	a, x := f.newDevice(t, "alpha"), f.newDevice(t, "revoked")
	mu.Lock()
	refused[x.id] = true
	mu.Unlock()

	as := f.watch(t, a, "alpha", a.publish())
	as.snapshot(t)
	for _, path := range []string{wire.PathWatch, wire.PathPublish} {
		r := f.postRefused(t, x.client, path, mustJSON(t, x.publish()))
		wantRefusal(t, "refused device "+path, r, http.StatusForbidden, "client certificate refused", "device "+string(x.id)+" is revoked")
	}
	f.sentinel(t, as)
	f.wantConnected(t, a.id)
	mu.Lock()
	var askedX int
	for _, id := range asked {
		if id == x.id {
			askedX++
		}
	}
	mu.Unlock()
	if askedX != 2 {
		t.Errorf("Authorize asked about the refused device %d times, want 2", askedX)
	}

	// Allowed again (e.g. the refusal was an approval still pending), it joins.
	mu.Lock()
	refused[x.id] = false
	mu.Unlock()
	xs := f.watch(t, x, "revoked", x.publish())
	if peers, _ := xs.snapshot(t); len(peers) != 1 {
		t.Fatalf("snapshot has %d peers, want 1", len(peers))
	}
	as.wantUpsert(t, x, x.publish())
}

// TestDocuments: the current documents go to a new watcher before its
// snapshot (CRL first, so that the agent judges the snapshot with it), each
// new version is broadcast to every connected watcher, and only the latest
// version of each kind is kept.
func TestDocuments(t *testing.T) {
	f := newFixture(t)
	if err := f.coord.SetDocument(wire.DocPolicy, []byte("policy v1")); err != nil {
		t.Fatal(err)
	}
	if err := f.coord.SetDocument(wire.DocCRL, []byte("crl 1")); err != nil {
		t.Fatal(err)
	}
	a := f.newDevice(t, "alpha")
	as := f.watch(t, a, "alpha", a.publish())
	_, docs := as.snapshot(t)
	wantDocs(t, "alpha", docs, wire.Document{Kind: wire.DocCRL, Data: []byte("crl 1")}, wire.Document{Kind: wire.DocPolicy, Data: []byte("policy v1")})

	// Connected watchers get each new version; the sender is nobody, so
	// everybody gets it.
	b := f.newDevice(t, "beta")
	bs := f.watch(t, b, "beta", b.publish())
	bs.snapshot(t)
	as.wantUpsert(t, b, b.publish())
	for _, d := range []struct {
		kind wire.DocKind
		data string
	}{{wire.DocPolicy, "policy v2"}, {wire.DocCheckpoint, "checkpoint 7"}, {wire.DocCRL, "crl 2"}} {
		if err := f.coord.SetDocument(d.kind, []byte(d.data)); err != nil {
			t.Fatal(err)
		}
		as.wantDocument(t, d.kind, []byte(d.data))
		bs.wantDocument(t, d.kind, []byte(d.data))
	}

	// A newcomer gets the current version of each kind, in the order CRL,
	// checkpoint, policy, then the snapshot.
	c := f.newDevice(t, "gamma")
	cs := f.watch(t, c, "gamma", c.publish())
	peers, docs := cs.snapshot(t)
	wantDocs(t, "gamma", docs,
		wire.Document{Kind: wire.DocCRL, Data: []byte("crl 2")},
		wire.Document{Kind: wire.DocCheckpoint, Data: []byte("checkpoint 7")},
		wire.Document{Kind: wire.DocPolicy, Data: []byte("policy v2")})
	if len(peers) != 2 {
		t.Fatalf("gamma's snapshot has %d peers, want 2", len(peers))
	}

	// A document too large for one event is refused and changes nothing.
	if err := f.coord.SetDocument(wire.DocPolicy, bytes.Repeat([]byte{'p'}, wire.MaxEventSize)); err == nil {
		t.Error("SetDocument accepted a document larger than an event may be")
	}
	d := f.newDevice(t, "delta")
	ds := f.watch(t, d, "delta", d.publish())
	_, docs = ds.snapshot(t)
	if got := docs[len(docs)-1]; got.Kind != wire.DocPolicy || string(got.Data) != "policy v2" {
		t.Errorf("after a refused SetDocument the current policy is %s %.20q, want policy v2", got.Kind, got.Data)
	}
}

func wantDocs(t *testing.T, who string, got []wire.Document, want ...wire.Document) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d documents before the snapshot, want %d", who, len(got), len(want))
	}
	for i := range want {
		if got[i].Kind != want[i].Kind || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Fatalf("%s: document %d is %s %q, want %s %q", who, i, got[i].Kind, got[i].Data, want[i].Kind, want[i].Data)
		}
	}
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

// TestSetDocumentRefusesInvalidDocuments: a document event agents would
// refuse to decode (no kind, no data) must not be relayed: it would end
// every connected watch, and, kept as the current document, every future
// watch before its snapshot.
//
// Found by these tests and fixed: SetDocument encodes
// without validating (coord/coord.go:114-124), so an empty document is
// stored and broadcast, and wire.DecodeEvent refuses it on every agent
// ("document event without a document").
func TestSetDocumentRefusesInvalidDocuments(t *testing.T) {
	f := newFixture(t)
	if err := f.coord.SetDocument(wire.DocPolicy, []byte("policy v1")); err != nil {
		t.Fatal(err)
	}
	a := f.newDevice(t, "alpha")
	as := f.watch(t, a, "alpha", a.publish())
	as.snapshot(t)
	for _, c := range []struct {
		kind wire.DocKind
		data []byte
	}{{wire.DocPolicy, nil}, {wire.DocCRL, []byte{}}, {"", []byte("no kind")}} {
		if err := f.coord.SetDocument(c.kind, c.data); err == nil {
			t.Errorf("SetDocument(%q, %q) accepted a document agents cannot decode", c.kind, c.data)
		}
	}
	f.sentinel(t, as) // the watch is still open, and nothing came before
	b := f.newDevice(t, "beta")
	bs := f.watch(t, b, "beta", b.publish())
	_, docs := bs.snapshot(t)
	if len(docs) == 0 {
		t.Fatal("beta got no documents before its snapshot")
	}
	wantDocs(t, "beta", docs,
		wire.Document{Kind: wire.DocCheckpoint, Data: docs[0].Data}, // the sentinel
		wire.Document{Kind: wire.DocPolicy, Data: []byte("policy v1")})
}
