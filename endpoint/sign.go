package endpoint

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"slices"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// digest is what the device key signs: SHA-256(Domain ‖ payload).
func digest(payload []byte) []byte {
	h := sha256.New()
	h.Write([]byte(Domain))
	h.Write(payload)
	return h.Sum(nil)
}

// deviceKey returns pub as the ECDSA P-256 key advertisements are signed
// with.
func deviceKey(pub crypto.PublicKey) (*ecdsa.PublicKey, error) {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("device key is %T, want ECDSA P-256", pub)
	}
	return k, nil
}

// Sign encodes a and signs it with the device key (a software key or one
// inside a TPM, ECDSA P-256), and returns the signed advertisement, the
// bytes to publish. IssuedAt is kept to the millisecond. It refuses, with
// the Reason Verify would give, an advertisement Verify would refuse for
// what it says (too many candidates, an invalid address, sequence 0).
func Sign(device crypto.Signer, a Advertisement) ([]byte, error) {
	pub, err := deviceKey(device.Public())
	if err != nil {
		return nil, fmt.Errorf("signing endpoint advertisement: %w", err)
	}
	a.IssuedAt = time.UnixMilli(a.IssuedAt.UnixMilli())
	if err := a.check(); err != nil {
		return nil, err
	}
	payload := a.payload()
	d := digest(payload)
	sig, err := device.Sign(rand.Reader, d, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("signing endpoint advertisement with the device key: %w", err)
	}
	if len(sig) == 0 || len(sig) > MaxSignatureSize {
		return nil, fmt.Errorf("signing endpoint advertisement: the device key gave a %d-byte signature, want 1 to %d", len(sig), MaxSignatureSize)
	}
	// A signer that is not the key it claims (a TPM handle gone stale)
	// would publish advertisements every peer refuses: say so here.
	if !ecdsa.VerifyASN1(pub, d, sig) {
		return nil, fmt.Errorf("signing endpoint advertisement: the device key's signature does not verify with its public key")
	}
	out := append(payload, byte(len(sig)))
	return append(out, sig...), nil
}

// Verify decides whether signed, relayed for the peer whose verified
// certificate is peer, may be used at time now, lastSeq being the highest
// sequence number already accepted from that peer (0 if none). It checks,
// in this order: that signed decodes (unsigned, malformed,
// too-many-candidates), that its signature is the peer's device key's
// (bad-signature), that it is for the certificate's device and WireGuard
// key (wrong-device, wrong-wireguard-key), that it was issued at most
// MaxAge before now and at most MaxSkew after (stale, future), that its
// sequence number is above lastSeq (replayed), and that every candidate is
// an address one can be reached at, listed once (invalid-address). It
// returns the advertisement, or an [*Error] saying why not.
//
// A caller that holds the very bytes it accepted last can skip them
// without calling Verify: they are the same advertisement, not a replay
// of an older one.
func Verify(signed []byte, peer certs.Identity, lastSeq uint64, now time.Time) (Advertisement, error) {
	p, err := parse(signed)
	if err != nil {
		return Advertisement{}, err
	}
	pub, err := deviceKey(peer.DeviceKey)
	if err != nil {
		return Advertisement{}, refuse(ReasonBadSignature, "peer %s: %v", peer.DeviceID, err)
	}
	if !ecdsa.VerifyASN1(pub, digest(p.payload), p.sig) {
		return Advertisement{}, refuse(ReasonBadSignature, "not signed by the device key of %s's certificate (serial %s)", peer.DeviceID, peer.Serial)
	}
	a := p.adv
	if a.DeviceID != peer.DeviceID {
		return Advertisement{}, refuse(ReasonWrongDevice, "for device %s, the certificate is %s's", a.DeviceID, peer.DeviceID)
	}
	if subtle.ConstantTimeCompare(a.WireGuardKey[:], peer.WireGuardKey[:]) != 1 {
		return Advertisement{}, refuse(ReasonWrongKey, "for WireGuard key %s, the certificate has %s", a.WireGuardKey, peer.WireGuardKey)
	}
	if age := now.Sub(a.IssuedAt); age > MaxAge {
		return Advertisement{}, refuse(ReasonStale, "issued at %s, %s ago (at most %s)", a.IssuedAt.Format(time.RFC3339), age.Round(time.Second), MaxAge)
	} else if -age > MaxSkew {
		return Advertisement{}, refuse(ReasonFuture, "issued at %s, %s ahead of this machine's clock (at most %s)", a.IssuedAt.Format(time.RFC3339), (-age).Round(time.Second), MaxSkew)
	}
	if a.Seq <= lastSeq {
		return Advertisement{}, refuse(ReasonReplayed, "sequence number %d, and %d was already accepted from %s", a.Seq, lastSeq, peer.DeviceID)
	}
	if err := checkCandidates(a.Candidates); err != nil {
		return Advertisement{}, err
	}
	a.Candidates = slices.Clip(a.Candidates)
	return a, nil
}
