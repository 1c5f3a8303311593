package endpoint

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/netip"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// FuzzVerify feeds Verify arbitrary bytes as a relayed advertisement. It
// must never panic, refuse with a typed reason whatever it refuses, and
// parse only canonical encodings: what it decodes encodes to the same
// bytes. A seed signed by the identity's key checks that mutations of
// it are refused unless they keep the signature valid.
//
//	go test ./endpoint -run XXX -fuzz FuzzVerify -fuzztime 20s
func FuzzVerify(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	id := certs.Identity{DeviceID: "abcdefghijklmnop", WireGuardKey: certs.WireGuardKey{1, 2, 3}, DeviceKey: key.Public()}
	now := time.UnixMilli(1_800_000_000_000)
	adv := Advertisement{DeviceID: id.DeviceID, WireGuardKey: id.WireGuardKey, Seq: 3, IssuedAt: now,
		Candidates: []Candidate{
			{Kind: Local, Addr: netip.MustParseAddrPort("192.0.2.1:51820")},
			{Kind: Reflexive, Addr: netip.MustParseAddrPort("[2001:db8::1]:4000")},
			{Kind: Relay, Addr: netip.MustParseAddrPort("198.51.100.9:3478")},
		}}
	good, err := Sign(key, adv)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(adv.payload())
	f.Add([]byte{})
	f.Add([]byte{Version, 16})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, perr := parse(b)
		got, err := Verify(b, id, 2, now)
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("refusal without a reason: %v", err)
			}
		} else if got.Seq <= 2 || got.DeviceID != id.DeviceID || len(got.Candidates) > MaxCandidates {
			t.Fatalf("accepted %+v", got)
		}
		if perr != nil {
			if err == nil {
				t.Fatalf("Verify accepted what parse refuses: %v", perr)
			}
			return
		}
		re := append(p.adv.payload(), byte(len(p.sig)))
		if re = append(re, p.sig...); !bytes.Equal(re, b) {
			t.Fatalf("not canonical: %x decodes to what encodes as %x", b, re)
		}
	})
}
