package policy

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"strings"
	"testing"
	"time"
)

// TestVerifyRefusesPastValidUntil: a genuine document is refused once past
// its ValidUntil, even by an agent that holds no policy (current 0), and
// accepted up to that second.
func TestVerifyRefusesPastValidUntil(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	d, err := SignValidFor(3, []byte(signedSrc), p.signer.Key, []*x509.Certificate{p.signer.Cert}, now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !d.ValidUntil.Equal(d.SignedAt.Add(time.Minute)) {
		t.Fatalf("valid-until %s, signed at %s", d.ValidUntil, d.SignedAt)
	}
	if _, err := Verify(d, p.ca.Roots(), d.ValidUntil, 0); err != nil {
		t.Fatalf("at its valid-until: %v", err)
	}
	_, err = Verify(d, p.ca.Roots(), d.ValidUntil.Add(time.Second), 0)
	wantReason(t, err, ReasonPastValidUntil)
	later := now.Add(2 * time.Minute)
	_, err = Verify(d, p.ca.Roots(), later, 2)
	wantReason(t, err, ReasonPastValidUntil)
	if !d.Expired(later) || d.Expired(d.ValidUntil) {
		t.Errorf("Expired: later %v, at valid-until %v", d.Expired(later), d.Expired(d.ValidUntil))
	}
	if _, err := SignValidFor(3, []byte(signedSrc), p.signer.Key, []*x509.Certificate{p.signer.Cert}, now, 0); err == nil {
		t.Error("SignValidFor signed with validity 0")
	}
}

// TestVerifyRefusesFirstFormat: a document of the first format (no
// valid-until, the v1 signature context) is refused, by its form when its
// valid-until is missing and by its signature when one is added.
func TestVerifyRefusesFirstFormat(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	d := &SignedPolicy{Version: 4, Policy: []byte(signedSrc), SignedAt: now.UTC().Truncate(time.Second)}
	d.Chain = [][]byte{p.signer.Cert.Raw}
	// The v1 message: context v1, version, signed-at, SHA-256 of the policy.
	sum := sha256.Sum256(d.Policy)
	msg := append([]byte("certmesh policy signature v1\x00"), binary.BigEndian.AppendUint64(nil, d.Version)...)
	msg = binary.BigEndian.AppendUint64(msg, uint64(d.SignedAt.Unix()))
	msg = append(msg, sum[:]...)
	h := sha256.Sum256(msg)
	sig, err := p.signer.Key.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	d.Signature = sig
	wire, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(wire), "valid_until") {
		t.Errorf("a document without valid-until writes one: %s", wire)
	}
	parsed, err := ParseSignedPolicy(wire)
	if err != nil {
		t.Fatalf("the first format's wire form no longer parses (the CA reads its old state with it): %v", err)
	}
	_, err = Verify(parsed, p.ca.Roots(), now, 0)
	wantReason(t, err, ReasonBadSignature) // the v1 message is not the v2 message
	// Signed the v2 way but without valid-until: refused for that.
	_, err = Verify(resign(t, parsed, p.signer.Key, p.signer.Cert), p.ca.Roots(), now, 0)
	wantReason(t, err, ReasonPastValidUntil)
	// A valid-until added under the v1 signature.
	parsed.ValidUntil = parsed.SignedAt.Add(time.Hour)
	_, err = Verify(parsed, p.ca.Roots(), now, 0)
	wantReason(t, err, ReasonBadSignature)
	// A valid-until not after the signing time is malformed.
	parsed.ValidUntil = parsed.SignedAt
	_, err = Verify(parsed, p.ca.Roots(), now, 0)
	wantReason(t, err, ReasonMalformed)
}

// TestIsResigning: the CA's next signing of the version held is one; the
// same document, an older signing, other content or another version are
// not.
func TestIsResigning(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	held := p.sign(t, 5, signedSrc, now.Add(-time.Minute))
	again := p.sign(t, 5, signedSrc, now)
	if !IsResigning(held, again) {
		t.Error("a later signing of the same version and policy is not a re-signing")
	}
	if _, err := Verify(again, p.ca.Roots(), now, held.Version-1); err != nil {
		t.Fatalf("a re-signing verified as the agent does: %v", err)
	}
	for name, d := range map[string]*SignedPolicy{
		"the same document": held,
		"an older signing":  p.sign(t, 5, signedSrc, now.Add(-2*time.Minute)),
		"other content":     p.sign(t, 5, strings.Replace(signedSrc, "under test", "other", 1), now),
		"next version":      p.sign(t, 6, signedSrc, now),
	} {
		if IsResigning(held, d) {
			t.Errorf("%s is taken for a re-signing", name)
		}
	}
}
