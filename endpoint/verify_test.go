package endpoint_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/endpoint"
	"github.com/certmesh/certmesh/tstest/testca"
)

func TestSignVerifyRoundTrip(t *testing.T) {
	ca := testca.New(t, td)
	d := newDevice(t, ca, "laptop")
	a := d.advert(7)
	a.IssuedAt = t0.Add(1234567 * time.Microsecond) // kept to the millisecond
	got, err := endpoint.Verify(d.sign(t, a), d.id, 6, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got.DeviceID != a.DeviceID || got.WireGuardKey != a.WireGuardKey || got.Seq != 7 ||
		!got.IssuedAt.Equal(a.IssuedAt.Truncate(time.Millisecond)) || !slices.Equal(got.Candidates, candidates) {
		t.Fatalf("Verify returned %+v; signed %+v", got, a)
	}
	// No candidates at all is an advertisement too (a device with no
	// address right now), and the bounds are inclusive.
	a.Candidates, a.IssuedAt = nil, t0
	if _, err := endpoint.Verify(d.sign(t, a), d.id, 0, a.IssuedAt.Add(endpoint.MaxAge)); err != nil {
		t.Fatalf("empty advertisement at MaxAge: %v", err)
	}
	if _, err := endpoint.Verify(d.sign(t, a), d.id, 0, a.IssuedAt.Add(-endpoint.MaxSkew)); err != nil {
		t.Fatalf("advertisement MaxSkew ahead: %v", err)
	}
}

func TestVerifyRefusesUnsigned(t *testing.T) {
	ca := testca.New(t, td)
	d := newDevice(t, ca, "laptop")
	signed := d.sign(t, d.advert(1))
	payload := endpoint.Payload(signed)
	for name, b := range map[string][]byte{
		"nothing":         nil,
		"empty":           {},
		"payload only":    payload,
		"empty signature": append(slices.Clone(payload), 0),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := endpoint.Verify(b, d.id, 0, t0)
			wantRefused(t, err, endpoint.ReasonUnsigned)
		})
	}
}

func TestVerifyRefusesBadSignature(t *testing.T) {
	ca := testca.New(t, td)
	d := newDevice(t, ca, "laptop")
	signed := d.sign(t, d.advert(1))
	payload := endpoint.Payload(signed)

	// A candidate's port changed on the way.
	port := slices.Clone(signed)
	port[len(payload)-1] ^= 1 // the last byte of the payload: the last candidate's port
	// A signature over the payload without the domain prefix: what the
	// device key would give signing those bytes for another purpose.
	h := sha256.Sum256(payload)
	raw, err := d.key.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	noDomain := append(append(slices.Clone(payload), byte(len(raw))), raw...)
	// The same advertisement, signed by a key that is not the device's.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, b := range map[string][]byte{
		"tampered port":       port,
		"no domain separator": noDomain,
		"another key":         endpoint.SignUnchecked(other, d.advert(1)),
		"signature mangled":   append(slices.Clone(signed[:len(signed)-1]), signed[len(signed)-1]^0x80),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := endpoint.Verify(b, d.id, 0, t0)
			wantRefused(t, err, endpoint.ReasonBadSignature)
		})
	}
	t.Run("certificate key is not P-256", func(t *testing.T) {
		id := d.id
		id.DeviceKey, _, _ = ed25519.GenerateKey(rand.Reader)
		_, err := endpoint.Verify(signed, id, 0, t0)
		wantRefused(t, err, endpoint.ReasonBadSignature)
	})
}

// TestVerifyRefusesAnotherDevice: a coordinator relays B's genuine
// advertisement as A's (bad signature: not A's key), or A's own key
// signed one naming another device or another WireGuard key.
func TestVerifyRefusesAnotherDevice(t *testing.T) {
	ca := testca.New(t, td)
	a, b := newDevice(t, ca, "alice"), newDevice(t, ca, "bob")
	_, err := endpoint.Verify(b.sign(t, b.advert(1)), a.id, 0, t0)
	wantRefused(t, err, endpoint.ReasonBadSignature)

	adv := a.advert(1)
	adv.DeviceID = b.id.DeviceID
	_, err = endpoint.Verify(a.sign(t, adv), a.id, 0, t0)
	wantRefused(t, err, endpoint.ReasonWrongDevice)

	// After a rotation: the same device key, the previous WireGuard key.
	adv = a.advert(1)
	adv.WireGuardKey = testca.RandomWireGuardKey(t)
	_, err = endpoint.Verify(a.sign(t, adv), a.id, 0, t0)
	wantRefused(t, err, endpoint.ReasonWrongKey)
}

func TestVerifyRefusesStaleAndFuture(t *testing.T) {
	ca := testca.New(t, td)
	d := newDevice(t, ca, "laptop")
	signed := d.sign(t, d.advert(1))
	_, err := endpoint.Verify(signed, d.id, 0, t0.Add(endpoint.MaxAge+time.Millisecond))
	wantRefused(t, err, endpoint.ReasonStale)
	_, err = endpoint.Verify(signed, d.id, 0, t0.Add(-endpoint.MaxSkew-time.Millisecond))
	wantRefused(t, err, endpoint.ReasonFuture)
	if endpoint.RefreshInterval+2*endpoint.MaxSkew > endpoint.MaxAge || endpoint.RefreshInterval <= 0 {
		t.Fatalf("RefreshInterval %s: a receiver %s ahead would find a refreshed advertisement stale", endpoint.RefreshInterval, endpoint.MaxSkew)
	}
}

func TestVerifyRefusesReplay(t *testing.T) {
	ca := testca.New(t, td)
	d := newDevice(t, ca, "laptop")
	signed := d.sign(t, d.advert(5))
	for _, last := range []uint64{5, 6, 1 << 63} {
		_, err := endpoint.Verify(signed, d.id, last, t0)
		wantRefused(t, err, endpoint.ReasonReplayed)
	}
	if _, err := endpoint.Verify(signed, d.id, 4, t0); err != nil {
		t.Fatalf("sequence 5 after 4: %v", err)
	}
	// Sequence 0 is never signed, and never accepted.
	_, err := endpoint.Sign(d.key, d.advert(0))
	wantRefused(t, err, endpoint.ReasonMalformed)
	_, err = endpoint.Verify(endpoint.SignUnchecked(d.key, d.advert(0)), d.id, 0, t0)
	wantRefused(t, err, endpoint.ReasonMalformed)
}

func TestVerifyRefusesTooMany(t *testing.T) {
	ca := testca.New(t, td)
	d := newDevice(t, ca, "laptop")
	adv := d.advert(1)
	adv.Candidates = nil
	for i := range endpoint.MaxCandidates + 1 {
		adv.Candidates = append(adv.Candidates, endpoint.Candidate{Kind: endpoint.Local,
			Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 51820)})
	}
	_, err := endpoint.Sign(d.key, adv)
	wantRefused(t, err, endpoint.ReasonTooMany)
	_, err = endpoint.Verify(endpoint.SignUnchecked(d.key, adv), d.id, 0, t0)
	wantRefused(t, err, endpoint.ReasonTooMany)

	adv.Candidates = adv.Candidates[:endpoint.MaxCandidates]
	if _, err := endpoint.Verify(d.sign(t, adv), d.id, 0, t0); err != nil {
		t.Fatalf("%d candidates: %v", endpoint.MaxCandidates, err)
	}
}

func TestVerifyRefusesInvalidAddress(t *testing.T) {
	ca := testca.New(t, td)
	d := newDevice(t, ca, "laptop")
	for name, ap := range map[string]netip.AddrPort{
		"port 0":       netip.MustParseAddrPort("192.0.2.1:0"),
		"unspecified":  netip.MustParseAddrPort("0.0.0.0:51820"),
		"unspecified6": netip.MustParseAddrPort("[::]:51820"),
		"multicast":    netip.MustParseAddrPort("224.0.0.1:51820"),
		"multicast6":   netip.MustParseAddrPort("[ff02::1]:51820"),
		"broadcast":    netip.MustParseAddrPort("255.255.255.255:51820"),
		"4in6":         netip.MustParseAddrPort("[::ffff:192.0.2.1]:51820"),
		"duplicate":    candidates[2].Addr,
	} {
		t.Run(name, func(t *testing.T) {
			adv := d.advert(1)
			adv.Candidates = append(slices.Clone(candidates), endpoint.Candidate{Kind: endpoint.Reflexive, Addr: ap})
			_, err := endpoint.Sign(d.key, adv)
			wantRefused(t, err, endpoint.ReasonInvalidAddress)
			_, err = endpoint.Verify(endpoint.SignUnchecked(d.key, adv), d.id, 0, t0)
			wantRefused(t, err, endpoint.ReasonInvalidAddress)
		})
	}
}

func TestSignRefuses(t *testing.T) {
	ca := testca.New(t, td)
	d := newDevice(t, ca, "laptop")
	adv := d.advert(1)
	adv.DeviceID = "not a device"
	_, err := endpoint.Sign(d.key, adv)
	wantRefused(t, err, endpoint.ReasonMalformed)
	adv = d.advert(1)
	adv.WireGuardKey = certs.WireGuardKey{}
	_, err = endpoint.Sign(d.key, adv)
	wantRefused(t, err, endpoint.ReasonMalformed)
	adv = d.advert(1)
	adv.IssuedAt = time.Unix(-1, 0)
	_, err = endpoint.Sign(d.key, adv)
	wantRefused(t, err, endpoint.ReasonMalformed)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := endpoint.Sign(ed, d.advert(1)); err == nil {
		t.Fatal("signed with an Ed25519 key; want ECDSA P-256 only")
	}
	if _, err := endpoint.Sign(liar{d.key, newDevice(t, ca, "other").id.DeviceKey}, d.advert(1)); err == nil {
		t.Fatal("signed with a signer whose public key is not its key")
	}
}

// liar signs with one key and claims another.
type liar struct {
	crypto.Signer
	pub crypto.PublicKey
}

func (l liar) Public() crypto.PublicKey { return l.pub }

func TestSignedIsCanonical(t *testing.T) {
	ca := testca.New(t, td)
	d := newDevice(t, ca, "laptop")
	signed := d.sign(t, d.advert(1))
	// Anything after the signature, or a longer signature length, is not
	// the same advertisement.
	for name, b := range map[string][]byte{
		"trailing byte": append(slices.Clone(signed), 0),
		"version 2":     append([]byte{2}, signed[1:]...),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := endpoint.Verify(b, d.id, 0, t0)
			wantRefused(t, err, endpoint.ReasonMalformed)
		})
	}
	if !bytes.HasPrefix(signed, endpoint.Payload(signed)) {
		t.Fatal("the signed advertisement does not start with its payload")
	}
}
