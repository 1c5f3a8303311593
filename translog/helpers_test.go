package translog

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/testca"
)

const testOrigin = "corp.example/certmesh/log"

type testKey struct {
	skey, vkey string
	signer     note.Signer
	verifier   *Verifier
}

func newTestKey(t testing.TB, origin string) testKey {
	t.Helper()
	skey, vkey, err := GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	s, vkey2, err := NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	if vkey2 != vkey {
		t.Fatalf("NewSigner derived verifier key %q, GenerateKey said %q", vkey2, vkey)
	}
	v, err := NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{skey: skey, vkey: vkey, signer: s, verifier: v}
}

func openTestLog(t testing.TB, k testKey) (*Log, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log.db")
	l, err := Open(path, k.signer, k.verifier.Origin())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, path
}

// testDevice is a fixed valid device ID.
var testDevice = certs.DeviceID("abcdefghijklmnop")

// syntheticEntry returns the i-th entry of a deterministic mix of
// revocations and policy versions (cheap to make, all distinct).
func syntheticEntry(i int, salt string) Entry {
	if i%3 == 0 {
		return PolicyEntry(uint64(i+1), []byte(fmt.Sprintf("policy %s %d", salt, i)), time.Unix(1_700_000_000+int64(i), 0))
	}
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s-%d", salt, i)))
	serial := new(big.Int).SetBytes(sum[:16])
	serial.SetBit(serial, 127, 1)
	return RevocationEntry(Revocation{Serial: serial, Time: time.Unix(1_700_000_000+int64(i), 0), Reason: ReasonCessationOfOperation, Device: testDevice})
}

func appendAll(t testing.TB, l *Log, es ...Entry) []uint64 {
	t.Helper()
	var out []uint64
	for _, e := range es {
		i, err := l.Append(context.Background(), e)
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		out = append(out, i)
	}
	return out
}

// memTree is the independent recomputation: tlog's hashing over an
// in-memory slice of stored hashes.
type memTree struct{ hashes []tlog.Hash }

func (m *memTree) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(m.hashes)) {
			return nil, fmt.Errorf("no hash %d", x)
		}
		out[i] = m.hashes[x]
	}
	return out, nil
}

func (m *memTree) add(n int64, leaf []byte) error {
	hs, err := tlog.StoredHashes(n, leaf, m)
	if err != nil {
		return err
	}
	m.hashes = append(m.hashes, hs...)
	return nil
}

// mth is RFC 6962 section 2.1's Merkle Tree Hash, written from its
// recursive definition: an oracle independent of tlog's storage layout.
func mth(leaves [][]byte) tlog.Hash {
	switch len(leaves) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return sha256.Sum256(append([]byte{0}, leaves[0]...))
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	l, r := mth(leaves[:k]), mth(leaves[k:])
	return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
}

func issueMachine(t testing.TB, ca *testca.CA, host string) certs.Bundle {
	t.Helper()
	b, _ := ca.IssueMachine(t, ca.NewProfile(t, host))
	return b
}
