//go:build tpmsimulator

package tpmkey_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent/tpmkey"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/endpoint"
	"github.com/certmesh/certmesh/tstest/tpmtest"
)

// TestDeviceKeySignsEndpointAdvertisement: a device key inside the TPM
// signs endpoint advertisements that endpoint.Verify accepts against its
// public key, and a bit changed in one is refused.
func TestDeviceKeySignsEndpointAdvertisement(t *testing.T) {
	f := tpmtest.New(t)
	dk, err := f.CreateDeviceKey(ctx, tpmkey.QualifyingData([]byte("nonce"), make([]byte, 32)))
	if err != nil {
		t.Fatal(err)
	}
	id := certs.Identity{DeviceID: "abcdefghijklmnop", WireGuardKey: certs.WireGuardKey{7}, DeviceKey: dk.Signer.Public()}
	now := time.Now()
	signed, err := endpoint.Sign(dk.Signer, endpoint.Advertisement{DeviceID: id.DeviceID, WireGuardKey: id.WireGuardKey,
		Seq: 1, IssuedAt: now, Candidates: []endpoint.Candidate{{Kind: endpoint.Local, Addr: netip.MustParseAddrPort("192.0.2.1:51820")}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := endpoint.Verify(signed, id, 0, now); err != nil {
		t.Fatalf("the TPM's signature refused: %v", err)
	}
	signed[2+len(id.DeviceID)] ^= 1 // the first byte of the WireGuard key (version, ID length, ID)
	if _, err := endpoint.Verify(signed, id, 0, now); endpoint.ReasonOf(err) != endpoint.ReasonBadSignature {
		t.Fatalf("a tampered advertisement: %v, want bad-signature", err)
	}
}
