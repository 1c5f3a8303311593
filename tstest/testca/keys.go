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
	wg, err := certs.WireGuardKeyFromBytes(must(t, k, err).PublicKey().Bytes())
	return must(t, wg, err)
}

// NewDeviceID returns a fresh random device ID.
func NewDeviceID(t testing.TB) certs.DeviceID {
	t.Helper()
	id, err := certs.NewDeviceID()
	return must(t, id, err)
}

func newKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := certs.NewKey()
	return must(t, k, err)
}

func randomSerial(t testing.TB) *big.Int {
	t.Helper()
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	return must(t, s, err).Add(s, big.NewInt(1))
}

// must returns v, or fails t if err is not nil.
func must[T any](t testing.TB, v T, err error) T {
	t.Helper()
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	return v
}
