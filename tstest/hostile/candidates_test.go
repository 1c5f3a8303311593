package hostile_test

// A coordinator that aims the victim's handshakes at an address of its
// choosing — a sink it controls — under the name of a certified peer: with
// unsigned endpoints, an advertisement it signed itself, another device's
// genuine advertisement, a stale one, or a replay of the peer's own older
// advertisement. The victim uses only candidates from an advertisement the
// peer's device key signed for its current certificate, fresh and newer
// than any it accepted: the sink receives nothing.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/endpoint"
	"github.com/certmesh/certmesh/internal/wire"
)

// signingPeer is a device the CA certified, with its device key: it can
// sign advertisements as the real device would. Nothing runs behind it.
type signingPeer struct {
	label  string
	dev    certs.DeviceID
	wg     certs.WireGuardKey
	key    crypto.Signer
	bundle certs.WireBundle
}

func (f *fixture) signingPeer(t *testing.T, label string) *signingPeer {
	t.Helper()
	k, err := wgdev.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	p := f.profile(t, label, k.Public())
	b, key := f.PKI.IssueMachine(t, p)
	return &signingPeer{label: label, dev: p.DeviceID, wg: k.Public(), key: key, bundle: b.Wire()}
}

// advertSeq numbers the test's advertisements: each above the last.
var advertSeq atomic.Uint64

// signAdvert signs, with key, an advertisement for device dev and key wg
// of the candidates at eps, issued at issued.
func signAdvert(t *testing.T, key crypto.Signer, dev certs.DeviceID, wg certs.WireGuardKey, issued time.Time, eps ...netip.AddrPort) []byte {
	t.Helper()
	adv := endpoint.Advertisement{DeviceID: dev, WireGuardKey: wg, Seq: advertSeq.Add(1), IssuedAt: issued}
	for _, ep := range eps {
		adv.Candidates = append(adv.Candidates, endpoint.Candidate{Kind: endpoint.Reflexive, Addr: ep})
	}
	b, err := endpoint.Sign(key, adv)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signable is the endpoints a device can sign: those no one can be
// reached at (unspecified, multicast, port 0) are refused by endpoint.Sign.
func signable(eps []netip.AddrPort) []netip.AddrPort {
	var out []netip.AddrPort
	for _, ep := range eps {
		if (endpoint.Candidate{Kind: endpoint.Reflexive, Addr: ep}).Check() == nil {
			out = append(out, ep)
		}
	}
	return out
}

// advert is p's own advertisement of eps, issued now.
func (p *signingPeer) advert(t *testing.T, eps ...netip.AddrPort) []byte {
	t.Helper()
	return signAdvert(t, p.key, p.dev, p.wg, time.Now(), eps...)
}

// relayed is p as the coordinator relays it, with this advertisement and
// these raw endpoints.
func (p *signingPeer) relayed(adv []byte, eps ...netip.AddrPort) wire.Peer {
	return wire.Peer{Label: p.label, Bundle: p.bundle, Endpoints: eps, Advertisement: adv}
}

// TestCoordinatorCannotAimHandshakes: every way a coordinator can pair a
// certified peer with an address it chose, and a sink at that address
// that receives nothing; the control, the same peer's genuine newer
// advertisement, is used (its address receives the handshakes), so the
// sink would have seen them.
func TestCoordinatorCannotAimHandshakes(t *testing.T) {
	f := newFixture(t)
	// Apart: the victim limits initiations to an address that does not
	// answer, and neither does.
	sink := newUDPCounter(t, "127.0.0.2")
	control := newUDPCounter(t, "127.0.0.1")
	attackerKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other := f.signingPeer(t, "other-device")

	// Each attack on a peer of its own: nothing genuine is held for it.
	attacks := []struct {
		label string
		peer  func(p *signingPeer) wire.Peer
	}{
		{"unsigned", func(p *signingPeer) wire.Peer { return p.relayed(nil, sink.Addr) }},
		{"forged", func(p *signingPeer) wire.Peer {
			return p.relayed(signAdvert(t, attackerKey, p.dev, p.wg, time.Now(), sink.Addr), sink.Addr)
		}},
		{"other-device", func(p *signingPeer) wire.Peer { return p.relayed(other.advert(t, sink.Addr), sink.Addr) }},
		{"other-key-this-name", func(p *signingPeer) wire.Peer {
			return p.relayed(signAdvert(t, other.key, p.dev, p.wg, time.Now(), sink.Addr), sink.Addr)
		}},
		{"stale", func(p *signingPeer) wire.Peer {
			return p.relayed(signAdvert(t, p.key, p.dev, p.wg, time.Now().Add(-endpoint.MaxAge-time.Minute), sink.Addr), sink.Addr)
		}},
	}
	var peers []*signingPeer
	for _, a := range attacks {
		p := f.signingPeer(t, "aimed-"+a.label)
		relayVerified(t, f.Victim, a.peer(p), p.wg)
		peers = append(peers, p)
	}

	// The replay: the peer's own older advertisement (of an address it has
	// left, now the coordinator's) after its newer one.
	roamed := f.signingPeer(t, "roamed")
	older := roamed.advert(t, sink.Addr)
	relayVerified(t, f.Victim, roamed.relayed(roamed.advert(t, control.Addr), control.Addr), roamed.wg)
	deadline := time.Now().Add(waitFor + keepaliveWindow)
	for _, n := control.counts(); n == 0; _, n = control.counts() {
		if time.Now().After(deadline) {
			t.Fatalf("the control address, in the peer's genuine advertisement, received no handshake initiation: the victim does not use verified candidates")
		}
		time.Sleep(20 * time.Millisecond)
	}
	send(t, f.Victim.Conn, upsert(roamed.relayed(older, sink.Addr)))
	st := f.sync(t)
	peers = append(peers, roamed)

	time.Sleep(keepaliveWindow) // a handshake goes out at once, or after the keepalive delay
	if all, _ := sink.counts(); all != 0 {
		t.Errorf("the coordinator's sink received %d packets", all)
	}
	for _, p := range peers {
		wp, ok := devicePeer(t, f.Victim, p.wg)
		if !ok {
			t.Errorf("%s: not configured (the attacks are on endpoints, the certificate is valid)", p.label)
		} else if wp.Endpoint == sink.Addr {
			t.Errorf("%s: configured with the sink %s as its endpoint", p.label, sink.Addr)
		}
	}
	for _, ps := range st.Peers {
		if slices.Contains(ps.Candidates, sink.Addr) {
			t.Errorf("%s: status lists the sink %s among its candidates %v", ps.DeviceID, sink.Addr, ps.Candidates)
		}
		if ps.DeviceID == roamed.dev && !slices.Equal(ps.Candidates, []netip.AddrPort{control.Addr}) {
			t.Errorf("after the replay, status shows the peer's candidates %v, want %v", ps.Candidates, control.Addr)
		}
	}
	if wp, _ := devicePeer(t, f.Victim, roamed.wg); wp.Endpoint != control.Addr {
		t.Errorf("after the replay, the peer's endpoint is %s, want its newer advertisement's %s", wp.Endpoint, control.Addr)
	}
	// Each refusal is counted, by reason (unsigned: the raw endpoints
	// are not candidates).
	for _, r := range []endpoint.Reason{endpoint.ReasonUnsigned, endpoint.ReasonBadSignature, endpoint.ReasonStale, endpoint.ReasonReplayed} {
		if st.RejectedCounts[agent.CandidateReason(r)] == 0 {
			t.Errorf("no refusal counted for reason %s: %v", r, st.RejectedCounts)
		}
	}
}

// TestAgentSignsAndRefreshesItsCandidates: a real agent publishes an
// advertisement of its endpoints signed by its device key, which verifies
// against its certificate, and signs a new one (a higher sequence number)
// before the freshness bound, on its own clock, and republishes it.
func TestAgentSignsAndRefreshesItsCandidates(t *testing.T) {
	f := newFixture(t)
	n := f.Peer
	b, err := certs.ParseBundle(n.Conn.Publish.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	id, err := certs.Verify(b, f.PKI.Roots(), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	first, err := endpoint.Verify(n.Conn.Publish.Advertisement, id, 0, n.Clock.Now())
	if err != nil {
		t.Fatalf("the agent's own advertisement: %v", err)
	}
	if len(first.Candidates) != 1 || first.Candidates[0].Addr != n.Endpoint() || first.Candidates[0].Kind != endpoint.Local {
		t.Fatalf("the agent advertises %v, want its endpoint %s as a local candidate", first.Candidates, n.Endpoint())
	}
	n.Clock.Advance(endpoint.RefreshInterval)
	deadline := time.Now().Add(waitFor + 2*agent.AdvertCheck)
	for {
		var got *endpoint.Advertisement
		for _, p := range f.Coord.Published() {
			if p.Path != wire.PathPublish || p.DeviceID != id.DeviceID {
				continue
			}
			if adv, err := endpoint.Verify(p.Publish.Advertisement, id, first.Seq, n.Clock.Now()); err == nil {
				got = &adv
			}
		}
		if got != nil {
			if !got.IssuedAt.After(first.IssuedAt) || len(got.Candidates) != 1 {
				t.Fatalf("the refreshed advertisement %+v, after %+v", got, first)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no newer advertisement published within %s of the refresh being due", waitFor+2*agent.AdvertCheck)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
