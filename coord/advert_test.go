package coord_test

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/certmesh/certmesh/endpoint"
	"github.com/certmesh/certmesh/internal/wire"
)

// TestAdvertisementRelayedAsPublished: the coordinator relays a device's
// signed endpoint advertisement byte for byte, in snapshots and upserts,
// without judging it (only the peers can verify it against the bundle);
// it only bounds its size.
func TestAdvertisementRelayedAsPublished(t *testing.T) {
	f := newFixture(t)
	a, b := f.newDevice(t, "alpha"), f.newDevice(t, "beta")
	signed, err := endpoint.Sign(a.key, endpoint.Advertisement{DeviceID: a.id, WireGuardKey: a.prof.WireGuardKey,
		Seq: 1, IssuedAt: time.Now(), Candidates: []endpoint.Candidate{
			{Kind: endpoint.Local, Addr: netip.MustParseAddrPort("192.0.2.1:51820")},
			{Kind: endpoint.Reflexive, Addr: netip.MustParseAddrPort("[2001:db8::1]:40000")},
		}})
	if err != nil {
		t.Fatal(err)
	}
	pa := a.publish("192.0.2.1:51820")
	pa.Advertisement = signed
	as := f.watch(t, a, "alpha", pa)
	as.snapshot(t)
	bs := f.watch(t, b, "beta", b.publish())
	peers, _ := bs.snapshot(t)
	checkPeer(t, "beta snapshot", peers[string(a.id)], a, pa)
	as.wantUpsert(t, b, b.publish())

	// A new advertisement replaces it; garbage of the allowed size is
	// relayed as well: the coordinator cannot tell, and need not.
	for _, adv := range [][]byte{bytes.Repeat([]byte{0xa5}, wire.MaxAdvertisementSize), nil} {
		next := a.publish("192.0.2.1:51820")
		next.Advertisement = adv
		publishOK(t, f, a.client, next)
		bs.wantUpsert(t, a, next)
	}
	f.sentinel(t, as, bs)
}
