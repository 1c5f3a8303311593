package hostile_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/testca"
)

// ---- one device: act as that device until revoked or expired; cannot act
// as another device.

// brDeviceActAsAnother: the attacker holds an enrolled device (its
// certificate, its device key, its WireGuard key) and tries to be the
// legitimate peer, on the data plane and at the CA.
func brDeviceActAsAnother(t *testing.T) {
	f := newFixture(t)
	f.connectPeer(t)
	peerBundle, err := certs.ParseBundle(f.Peer.Conn.Publish.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	var withUserID certs.DeviceID
	runAttacks(t, f, []attack{
		control, // its own certificate works: what the row grants
		// Its own certificate, its packets sent from the peer's address.
		{name: "own-certificate-sending-from-the-peers-address", src: peerAddrs, keyConfigured: true,
			peer: issued(func(f *fixture, p *certs.MachineProfile) { p.Addresses = f.freshAddrs() })},
		{name: "peer-certificate-with-its-own-key", want: certs.ReasonUntrusted, src: peerAddrs, label: peerLabel, peer: swappedKey},
		{name: "peer-identity-signed-with-its-own-device-key", want: certs.ReasonUntrusted, src: peerAddrs, label: peerLabel,
			peer: func(t *testing.T, f *fixture, a *attacker) wire.Peer {
				own, ownKey := f.PKI.IssueMachine(t, f.profile(t, "compromised", testca.RandomWireGuardKey(t)))
				return issued(asPeer, testca.WithIssuer(&certs.KeyPair{Cert: own.Machine, Key: ownKey}),
					testca.WithIntermediates(own.Machine, f.PKI.Intermediate().Cert))(t, f, a)
			}},
		// Its own certificate with a user certificate of the peer's: it
		// still gets through as itself (the starter policy lets every
		// device in), but not as the peer's user.
		{name: "own-certificate-with-the-peers-user-certificate", keyConfigured: true, delivered: true,
			peer: func(t *testing.T, f *fixture, a *attacker) wire.Peer {
				prof := f.legitProfile(t, a)
				withUserID = prof.DeviceID
				own, key := f.PKI.IssueMachine(t, prof)
				u := f.PKI.IssueUser(t, peerBundle, testca.WithEmail(goodEmail))
				return wire.Peer{Bundle: attachUser(own, u).Wire(),
					Advertisement: signAdvert(t, key, prof.DeviceID, prof.WireGuardKey, time.Now(), a.Endpoint())}
			},
			check: func(t *testing.T, f *fixture, r *attackRun) {
				ps, ok := peerOf(r.status, withUserID)
				if !ok || ps.User != nil || !strings.Contains(ps.UserRejected, "("+string(certs.ReasonUserDeviceMismatch)+")") {
					t.Errorf("the attacker's device shows %+v (found %v), want no user, %q", ps, ok, certs.ReasonUserDeviceMismatch)
				}
			}},
	})
	checkPeerUnharmed(t, f)

	// At the CA: the victim's device is the compromised one (its keys read
	// from its state directory); it asks to renew into the peer.
	t.Run("renew-as-another-device", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), waitFor)
		defer cancel()
		v := f.Victim
		deviceKey := readKey(t, filepath.Join(v.StateDir, "device.key"))
		vb, err := certs.ParseBundle(v.Conn.Publish.Bundle)
		if err != nil {
			t.Fatal(err)
		}
		chain := append([]*x509.Certificate{vb.Machine}, vb.Intermediates...)
		renew := func(device crypto.Signer, wgPub certs.WireGuardKey, wgPriv wgdev.PrivateKey) (wire.CertificateResponse, error) {
			csr, nonce, proof := brProofs(t, f, device, wgPriv)
			return f.CA.Renew(ctx, chain, wire.RenewRequest{CSR: csr, WireGuardKey: wgPub, Nonce: nonce, Proof: proof})
		}
		otherKey, err := certs.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name   string
			device crypto.Signer
			wgPub  certs.WireGuardKey
			wgPriv wgdev.PrivateKey
		}{
			{"the peer's WireGuard key, proven with its own", deviceKey, f.Peer.Self.WireGuardKey, v.WGKey},
			// Had it stolen the peer's WireGuard private key too.
			{"the peer's WireGuard key with its private key", deviceKey, f.Peer.Self.WireGuardKey, f.Peer.WGKey},
			{"another device key", otherKey, v.Self.WireGuardKey, v.WGKey},
		} {
			resp, err := renew(c.device, c.wgPub, c.wgPriv)
			if err == nil {
				t.Errorf("%s: renewed into device %s", c.name, resp.DeviceID)
			} else {
				t.Logf("%s: refused (%s): %v", c.name, ca.CodeOf(err), err)
			}
		}
		// Positive control: it renews as itself, and only as itself.
		resp, err := renew(deviceKey, v.Self.WireGuardKey, v.WGKey)
		if err != nil {
			t.Fatalf("the device could not renew as itself: %v", err)
		}
		nb, err := certs.ParseBundle(resp.Bundle)
		if err != nil {
			t.Fatal(err)
		}
		id, err := certs.Verify(nb, f.CA.Roots(), nil, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if id.DeviceID != v.Self.DeviceID || !slices.Equal(id.Addresses, v.Self.Addresses) || id.WireGuardKey != v.Self.WireGuardKey {
			t.Errorf("the renewal is for %s %v %v, want the device's own identity", id.DeviceID, id.Addresses, id.WireGuardKey)
		}
	})
}
