package path

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"

	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/hkdf"

	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
)

// probeSalt and probeLabel make the probe keys certmesh's own: no other
// protocol derives them from a WireGuard static-static secret.
const (
	probeSalt  = "certmesh path probe v1"
	probeLabel = "certmesh probe key"
)

// pairKeys authenticate the probes between this agent and one peer. Each
// direction has its own MAC key and sender ID, so that a probe reflected
// back to its sender does not verify.
type pairKeys struct {
	sendID, recvID   [probeIDSize]byte
	sendMAC, recvMAC [32]byte
}

// derivePairKeys derives the probe keys of the pair (our key, peer) from
// X25519(our private key, peer's public key): only the holders of the two
// certified WireGuard keys can compute it. HKDF-SHA256 expands it with
// both public keys, lower first, and the sender's key last.
func derivePairKeys(priv wgdev.PrivateKey, peer certs.WireGuardKey) (pairKeys, error) {
	var k pairKeys
	ours := priv.Public()
	if ours == peer {
		return k, fmt.Errorf("deriving probe keys: peer key is our own")
	}
	shared, err := curve25519.X25519(priv[:], peer[:])
	if err != nil {
		return k, fmt.Errorf("deriving probe keys with %v: %w", peer, err)
	}
	defer clear(shared)
	lo, hi := ours, peer
	if bytes.Compare(lo[:], hi[:]) > 0 {
		lo, hi = hi, lo
	}
	prk := hkdf.Extract(sha256.New, shared, []byte(probeSalt))
	defer clear(prk)
	expand := func(sender certs.WireGuardKey, what string, out []byte) error {
		info := make([]byte, 0, len(probeLabel)+3*32+len(what))
		info = append(append(append(append(append(info, probeLabel...), lo[:]...), hi[:]...), sender[:]...), what...)
		_, err := io.ReadFull(hkdf.Expand(sha256.New, prk, info), out)
		return err
	}
	for _, e := range []struct {
		sender certs.WireGuardKey
		what   string
		out    []byte
	}{
		{ours, "id", k.sendID[:]}, {ours, "mac", k.sendMAC[:]},
		{peer, "id", k.recvID[:]}, {peer, "mac", k.recvMAC[:]},
	} {
		if err := expand(e.sender, e.what, e.out); err != nil {
			return pairKeys{}, fmt.Errorf("deriving probe keys: %w", err)
		}
	}
	return k, nil
}
