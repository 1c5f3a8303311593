package endpoint_test

import (
	"crypto"
	"net/netip"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/endpoint"
	"github.com/certmesh/certmesh/tstest/testca"
)

const td = certs.TrustDomain("corp.example")

// t0 is the time the tests sign and verify at.
var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// device is an enrolled device: the identity a peer verifies from its
// certificate (by certs.Verify, as agents do) and its device key.
type device struct {
	id  certs.Identity
	key crypto.Signer
}

func newDevice(t testing.TB, ca *testca.CA, host string) device {
	t.Helper()
	b, key := ca.IssueMachine(t, ca.NewProfile(t, host))
	id, err := certs.Verify(b, ca.Roots(), nil, time.Now())
	if err != nil {
		t.Fatalf("verifying %s's certificate: %v", host, err)
	}
	return device{id: id, key: key}
}

// candidates is one of each kind, IPv4 and IPv6.
var candidates = []endpoint.Candidate{
	{Kind: endpoint.Local, Addr: netip.MustParseAddrPort("192.168.1.20:51820")},
	{Kind: endpoint.Local, Addr: netip.MustParseAddrPort("[2001:db8::20]:51820")},
	{Kind: endpoint.Reflexive, Addr: netip.MustParseAddrPort("203.0.113.7:40123")},
	{Kind: endpoint.Relay, Addr: netip.MustParseAddrPort("[2001:db8:1::1]:3478")},
}

// advert is what d would advertise at t0 with sequence number seq.
func (d device) advert(seq uint64) endpoint.Advertisement {
	return endpoint.Advertisement{DeviceID: d.id.DeviceID, WireGuardKey: d.id.WireGuardKey,
		Seq: seq, IssuedAt: t0, Candidates: candidates}
}

func (d device) sign(t testing.TB, a endpoint.Advertisement) []byte {
	t.Helper()
	b, err := endpoint.Sign(d.key, a)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return b
}

// wantRefused checks that err is a refusal for reason r.
func wantRefused(t *testing.T, err error, r endpoint.Reason) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want a refusal (%s)", r)
	}
	if got := endpoint.ReasonOf(err); got != r {
		t.Fatalf("refused for %q (%v); want %q", got, err, r)
	}
}
