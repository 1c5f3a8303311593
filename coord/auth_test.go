package coord_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/coord"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/testca"
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
