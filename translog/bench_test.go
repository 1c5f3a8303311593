package translog

import (
	"context"
	"testing"
)

// BenchmarkAppend measures one durable append (one bbolt transaction with
// its fsync, O(log n) hashes, a signed checkpoint) on a log that grows.
func BenchmarkAppend(b *testing.B) {
	k := newTestKey(b, testOrigin)
	l, _ := openTestLog(b, k)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := l.Append(ctx, syntheticEntry(i, "bench")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendBatch100 measures appends in batches of 100 (one
// transaction and one checkpoint per batch); reported per entry.
func BenchmarkAppendBatch100(b *testing.B) {
	k := newTestKey(b, testOrigin)
	l, _ := openTestLog(b, k)
	ctx := context.Background()
	n := 0
	batch := make([]Entry, 100)
	b.ResetTimer()
	for b.Loop() {
		for j := range batch {
			batch[j] = syntheticEntry(n, "bench")
			n++
		}
		if _, err := l.AppendBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/entry")
}

// BenchmarkVerifyInclusion measures what an agent does per peer
// certificate: parse and check the checkpoint signature, then the
// inclusion proof, in a log of 10,000 entries.
func BenchmarkVerifyInclusion(b *testing.B) {
	k := newTestKey(b, testOrigin)
	l, _ := openTestLog(b, k)
	es := make([]Entry, 10_000)
	for i := range es {
		es[i] = syntheticEntry(i, "bench")
	}
	if _, err := l.AppendBatch(context.Background(), es); err != nil {
		b.Fatal(err)
	}
	bundle, err := l.InclusionBundle(4321)
	if err != nil {
		b.Fatal(err)
	}
	leaf, _ := es[4321].MarshalLeaf()
	h := LeafHash(leaf)
	b.Run("checkpoint+proof", func(b *testing.B) {
		for b.Loop() {
			cp, err := k.verifier.ParseCheckpoint(bundle.Checkpoint)
			if err != nil {
				b.Fatal(err)
			}
			if err := k.verifier.VerifyInclusion(h, bundle.Index, bundle.Proof, cp); err != nil {
				b.Fatal(err)
			}
		}
	})
	cp, _ := k.verifier.ParseCheckpoint(bundle.Checkpoint)
	b.Run("proof", func(b *testing.B) {
		for b.Loop() {
			if err := k.verifier.VerifyInclusion(h, bundle.Index, bundle.Proof, cp); err != nil {
				b.Fatal(err)
			}
		}
	})
}
