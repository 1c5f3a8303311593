package translog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certmesh/certmesh/tstest/testca"
)

// TestAppendAndProofsRandomSizes grows logs of random sizes and checks,
// after every append, the signed root against tlog's in-memory
// recomputation and RFC 6962's recursive definition, then random
// inclusion and consistency proofs against the recomputed roots.
func TestAppendAndProofsRandomSizes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	k := newTestKey(t, testOrigin)
	for trial := range 6 {
		l, _ := openTestLog(t, k)
		size := 1 + rng.IntN(180)
		if trial == 0 {
			size = 1
		}
		mem := &memTree{}
		var leaves [][]byte
		roots := []tlog.Hash{mth(nil)}
		for i := range size {
			e := syntheticEntry(i, "random")
			idx, err := l.Append(context.Background(), e)
			if err != nil {
				t.Fatal(err)
			}
			if idx != uint64(i) {
				t.Fatalf("Append #%d returned index %d", i, idx)
			}
			leaf, _ := e.MarshalLeaf()
			leaves = append(leaves, leaf)
			if err := mem.add(int64(i), leaf); err != nil {
				t.Fatal(err)
			}
			want, err := tlog.TreeHash(int64(i+1), mem)
			if err != nil {
				t.Fatal(err)
			}
			if got := mth(leaves); got != want {
				t.Fatalf("size %d: tlog recomputation %s, RFC 6962 definition %s", i+1, want, got)
			}
			cp, err := k.verifier.ParseCheckpoint(l.Checkpoint())
			if err != nil {
				t.Fatal(err)
			}
			if cp.Size != uint64(i+1) || cp.Root != want {
				t.Fatalf("after append %d: checkpoint (%d, %s), recomputed (%d, %s)", i, cp.Size, cp.Root, i+1, want)
			}
			roots = append(roots, want)
		}
		// Entries come back as appended.
		for start := uint64(0); start < uint64(size); {
			es, err := l.Entries(start, uint64(size))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				if !bytes.Equal(e.Leaf, leaves[e.Index]) || e.Index != start {
					t.Fatalf("entry %d differs from the appended leaf", e.Index)
				}
				start++
			}
		}
		for range 60 {
			n := 1 + uint64(rng.IntN(size))
			i := uint64(rng.IntN(int(n)))
			proof, err := l.InclusionProof(i, n)
			if err != nil {
				t.Fatal(err)
			}
			cp := Checkpoint{Origin: testOrigin, Size: n, Root: roots[n]}
			if err := k.verifier.VerifyInclusion(LeafHash(leaves[i]), i, proof, cp); err != nil {
				t.Fatalf("inclusion of %d in %d: %v", i, n, err)
			}
			// The same proof must fail for another leaf or index.
			if err := k.verifier.VerifyInclusion(LeafHash([]byte("other")), i, proof, cp); ReasonOf(err) != ReasonBadInclusionProof {
				t.Fatalf("inclusion of a foreign leaf: %v", err)
			}
			if n > 1 {
				j := (i + 1) % n
				if err := k.verifier.VerifyInclusion(LeafHash(leaves[i]), j, proof, cp); err == nil {
					t.Fatalf("inclusion of %d accepted at index %d", i, j)
				}
			}

			m := uint64(rng.IntN(int(n) + 1))
			cproof, err := l.ConsistencyProof(m, n)
			if err != nil {
				t.Fatal(err)
			}
			old := Checkpoint{Origin: testOrigin, Size: m, Root: roots[m]}
			if err := k.verifier.VerifyConsistency(old, cp, cproof); err != nil {
				t.Fatalf("consistency %d -> %d: %v", m, n, err)
			}
			if m > 0 && m < n {
				bad := old
				bad.Root[0] ^= 1
				if err := k.verifier.VerifyConsistency(bad, cp, cproof); ReasonOf(err) != ReasonInconsistent {
					t.Fatalf("consistency %d -> %d from a wrong root: %v", m, n, err)
				}
			}
		}
		// The bundle the CA hands out verifies.
		i := uint64(rng.IntN(size))
		b, err := l.InclusionBundle(i)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := k.verifier.ParseCheckpoint(b.Checkpoint)
		if err != nil || cp.Size != b.TreeSize {
			t.Fatalf("bundle checkpoint: %v (size %d vs %d)", err, cp.Size, b.TreeSize)
		}
		if err := k.verifier.VerifyInclusion(LeafHash(leaves[i]), i, b.Proof, cp); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOutOfRange(t *testing.T) {
	k := newTestKey(t, testOrigin)
	l, _ := openTestLog(t, k)
	appendAll(t, l, syntheticEntry(0, "r"), syntheticEntry(1, "r"))
	cases := []func() error{
		func() error { _, err := l.InclusionProof(2, 2); return err },
		func() error { _, err := l.InclusionProof(0, 3); return err },
		func() error { _, err := l.ConsistencyProof(2, 1); return err },
		func() error { _, err := l.ConsistencyProof(1, 3); return err },
		func() error { _, err := l.Entries(1, 1); return err },
		func() error { _, err := l.Entries(0, 3); return err },
		func() error { _, err := l.InclusionBundle(2); return err },
	}
	for i, c := range cases {
		if err := c(); ReasonOf(err) != ReasonOutOfRange {
			t.Errorf("case %d: got %v, want %s", i, err, ReasonOutOfRange)
		}
	}
}

func TestEmptyLog(t *testing.T) {
	k := newTestKey(t, testOrigin)
	l, _ := openTestLog(t, k)
	cp, err := k.verifier.ParseCheckpoint(l.Checkpoint())
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != 0 || cp.Root != mth(nil) {
		t.Fatalf("empty log checkpoint (%d, %s)", cp.Size, cp.Root)
	}
	p, err := l.ConsistencyProof(0, 0)
	if err != nil || len(p) != 0 {
		t.Fatalf("ConsistencyProof(0, 0) = %v, %v", p, err)
	}
}

func TestAppendIsIdempotent(t *testing.T) {
	k := newTestKey(t, testOrigin)
	l, _ := openTestLog(t, k)
	ca := testca.New(t, "corp.example")
	b := issueMachine(t, ca, "one")
	e := CertificateEntry(b.Machine.Raw, b.Intermediates[0].Raw)
	first := appendAll(t, l, e, syntheticEntry(1, "x"))[0]
	cp := l.Checkpoint()
	again := appendAll(t, l, e)[0]
	if again != first || l.Size() != 2 || !bytes.Equal(cp, l.Checkpoint()) {
		t.Fatalf("re-appending returned %d (first %d), size %d, checkpoint changed: %v", again, first, l.Size(), !bytes.Equal(cp, l.Checkpoint()))
	}
	h, _ := CertificateLeafHash(b.Machine.Raw)
	if i, ok, err := l.Lookup(h); err != nil || !ok || i != first {
		t.Fatalf("Lookup = %d, %v, %v", i, ok, err)
	}
	es, err := l.Entries(0, 1)
	if err != nil || len(es[0].Chain) != 1 || !bytes.Equal(es[0].Chain[0], b.Intermediates[0].Raw) {
		t.Fatalf("chain not stored beside the certificate: %v", err)
	}
}

func TestAppendRefusesMalformed(t *testing.T) {
	k := newTestKey(t, testOrigin)
	l, _ := openTestLog(t, k)
	ca := testca.New(t, "corp.example")
	good := issueMachine(t, ca, "one").Machine.Raw
	bad := []Entry{
		{Kind: KindCertificate, Certificate: []byte("not DER")},
		{Kind: KindCertificate},
		CertificateEntry(good, []byte("not DER")),
		{Kind: 9},
		{Kind: KindRevocation},
		{Kind: KindPolicy, Policy: &PolicyVersion{}},
		{Kind: KindCertificate, Certificate: good, Policy: &PolicyVersion{Version: 1}},
	}
	for i, e := range bad {
		if _, err := l.Append(context.Background(), e); ReasonOf(err) != ReasonMalformedEntry {
			t.Errorf("entry %d: got %v, want %s", i, err, ReasonMalformedEntry)
		}
	}
	if l.Size() != 0 {
		t.Fatalf("refused entries changed the log: size %d", l.Size())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, CertificateEntry(good)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled context: %v", err)
	}
}

func TestPersistenceAcrossReopen(t *testing.T) {
	k := newTestKey(t, testOrigin)
	path := filepath.Join(t.TempDir(), "log.db")
	l, err := Open(path, k.signer, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 37 {
		appendAll(t, l, syntheticEntry(i, "p"))
	}
	before, err := k.verifier.ParseCheckpoint(l.Checkpoint())
	if err != nil {
		t.Fatal(err)
	}
	l.Close()

	l, err = Open(path, k.signer, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	after, err := k.verifier.ParseCheckpoint(l.Checkpoint())
	if err != nil {
		t.Fatal(err)
	}
	if after.Size != before.Size || after.Root != before.Root {
		t.Fatalf("reopened log has (%d, %s), before (%d, %s)", after.Size, after.Root, before.Size, before.Root)
	}
	if i := appendAll(t, l, syntheticEntry(37, "p"))[0]; i != 37 {
		t.Fatalf("append after reopen got index %d", i)
	}
	grown, _ := k.verifier.ParseCheckpoint(l.Checkpoint())
	proof, err := l.ConsistencyProof(before.Size, grown.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.verifier.VerifyConsistency(before, grown, proof); err != nil {
		t.Fatal(err)
	}
	l.Close()

	// Another origin, or a key named otherwise, is refused.
	other := newTestKey(t, "other.example/certmesh/log")
	if _, err := Open(path, other.signer, other.verifier.Origin()); err == nil || !strings.Contains(err.Error(), "not") {
		t.Fatalf("reopening as another log: %v", err)
	}
	if _, err := Open(path, other.signer, testOrigin); err == nil {
		t.Fatal("a signer named after another origin was accepted")
	}
	// A rotated key (same origin) re-signs the same tree.
	rotated := newTestKey(t, testOrigin)
	l, err = Open(path, rotated.signer, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cp, err := rotated.verifier.ParseCheckpoint(l.Checkpoint())
	if err != nil || cp.Root != grown.Root {
		t.Fatalf("rotated key: %v", err)
	}
	if _, err := k.verifier.ParseCheckpoint(l.Checkpoint()); ReasonOf(err) != ReasonBadSignature {
		t.Fatalf("old key verified the rotated key's checkpoint: %v", err)
	}
}

// TestOpenDetectsCorruptStorage changes a stored hash behind the log's
// back: Open must notice that the tree no longer matches its checkpoint.
func TestOpenDetectsCorruptStorage(t *testing.T) {
	k := newTestKey(t, testOrigin)
	path := filepath.Join(t.TempDir(), "log.db")
	l, err := Open(path, k.signer, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		appendAll(t, l, syntheticEntry(i, "c"))
	}
	l.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		key := binary.BigEndian.AppendUint64(nil, uint64(tlog.StoredHashIndex(0, 4)))
		return tx.Bucket(bucketHashes).Put(key, make([]byte, 32))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, k.signer, testOrigin); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("Open of corrupt storage: %v", err)
	}
}

func TestAppendBatch(t *testing.T) {
	k := newTestKey(t, testOrigin)
	l, _ := openTestLog(t, k)
	single, _ := openTestLog(t, k)
	var es []Entry
	for i := range 20 {
		es = append(es, syntheticEntry(i, "b"))
	}
	es = append(es, es[3]) // a duplicate inside the batch
	idx, err := l.AppendBatch(context.Background(), es)
	if err != nil {
		t.Fatal(err)
	}
	if len(idx) != 21 || idx[20] != 3 || idx[19] != 19 || l.Size() != 20 {
		t.Fatalf("indexes %v, size %d", idx, l.Size())
	}
	appendAll(t, single, es...)
	if a, b := checkpointOf(t, k, l), checkpointOf(t, k, single); a.Root != b.Root || a.Size != b.Size {
		t.Fatal("a batch and the same appends one by one give different trees")
	}
	// One bad entry: nothing is appended.
	if _, err := l.AppendBatch(context.Background(), []Entry{syntheticEntry(50, "b"), {Kind: 9}}); ReasonOf(err) != ReasonMalformedEntry {
		t.Fatalf("batch with a bad entry: %v", err)
	}
	if l.Size() != 20 {
		t.Fatalf("a refused batch appended: size %d", l.Size())
	}
}
