package testca

import (
	"crypto"
	"crypto/ecdh"
	"crypto/rand"
	"math/big"
	"testing"

	"github.com/certmesh/certmesh/certs"
)

// RandomWireGuardKey returns the public key of a fresh X25519 key pair.
func RandomWireGuardKey(t testing.TB) certs.WireGuardKey {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	wg, err := certs.WireGuardKeyFromBytes(k.PublicKey().Bytes())
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	return wg
}

// NewDeviceID returns a fresh random device ID.
func NewDeviceID(t testing.TB) certs.DeviceID {
	t.Helper()
	id, err := certs.NewDeviceID()
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	return id
}

func newKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := certs.NewKey()
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	return k
}

func randomSerial(t testing.TB) *big.Int {
	t.Helper()
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	return s.Add(s, big.NewInt(1))
}
