package endpoint_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/endpoint"
	"github.com/certmesh/certmesh/tstest/testca"
)

// TestLargestFitsMaxSize: the longest device ID, MaxCandidates IPv6
// candidates and a signature of the longest size stay within MaxSize.
func TestLargestFitsMaxSize(t *testing.T) {
	ca := testca.New(t, td)
	d := newDevice(t, ca, "laptop")
	adv := d.advert(1<<64 - 1)
	adv.DeviceID = certs.DeviceID(strings.Repeat("a", 64))
	adv.Candidates = nil
	for i := range endpoint.MaxCandidates {
		adv.Candidates = append(adv.Candidates, endpoint.Candidate{Kind: endpoint.Relay,
			Addr: netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i + 1)}), 65535)})
	}
	signed := d.sign(t, adv)
	if n := len(endpoint.Payload(signed)) + 1 + endpoint.MaxSignatureSize; n > endpoint.MaxSize {
		t.Fatalf("the largest advertisement is %d bytes with the longest signature, MaxSize is %d", n, endpoint.MaxSize)
	}
}

func TestVerifyRefusesMalformed(t *testing.T) {
	ca := testca.New(t, td)
	d := newDevice(t, ca, "laptop")
	signed := d.sign(t, d.advert(1))
	payload := endpoint.Payload(signed)
	sig := signed[len(payload)+1:]
	with := func(p []byte, edit func([]byte)) []byte {
		p = slices.Clone(p)
		edit(p)
		return append(append(p, byte(len(sig))), sig...)
	}
	idLen := len(d.id.DeviceID)
	firstCand := 1 + 1 + idLen + 32 + 8 + 8 + 1 // version, ID, key, seq, time, count
	for name, b := range map[string][]byte{
		"one byte":           {endpoint.Version},
		"truncated payload":  payload[:len(payload)-3],
		"truncated sig":      signed[:len(signed)-1],
		"signature too long": append(slices.Clone(payload), endpoint.MaxSignatureSize+1),
		"over MaxSize":       make([]byte, endpoint.MaxSize+1),
		"bad device ID":      with(payload, func(p []byte) { p[2] = 'A' }),
		"short device ID":    with(payload, func(p []byte) { p[1] = 15 }),
		"unknown kind":       with(payload, func(p []byte) { p[firstCand] = 9 }),
		"kind 0":             with(payload, func(p []byte) { p[firstCand] = 0 }),
		"address family 5":   with(payload, func(p []byte) { p[firstCand+1] = 5 }),
		"time out of range":  with(payload, func(p []byte) { p[firstCand-9] = 0x80 }),
		"count beyond data":  with(payload, func(p []byte) { p[firstCand-1]++ }),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := endpoint.Verify(b, d.id, 0, t0)
			wantRefused(t, err, endpoint.ReasonMalformed)
		})
	}
	t.Run("count over MaxCandidates", func(t *testing.T) {
		_, err := endpoint.Verify(with(payload, func(p []byte) { p[firstCand-1] = endpoint.MaxCandidates + 1 }), d.id, 0, t0)
		wantRefused(t, err, endpoint.ReasonTooMany)
	})
}

func TestKindNames(t *testing.T) {
	for k, want := range map[endpoint.Kind]string{endpoint.Local: "local", endpoint.Reflexive: "reflexive", endpoint.Relay: "relay", 7: "kind(7)"} {
		if b, _ := k.MarshalText(); string(b) != want {
			t.Errorf("kind %d is %q, want %q", k, b, want)
		}
	}
	if s := candidates[0].String(); s != "local 192.168.1.20:51820" {
		t.Errorf("candidate prints as %q", s)
	}
}
