package translog

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/certmesh/certmesh/tstest/testca"
)

func checkpointOf(t *testing.T, k testKey, l *Log) Checkpoint {
	t.Helper()
	cp, err := k.verifier.ParseCheckpoint(l.Checkpoint())
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func TestWitnessConsistentGrowth(t *testing.T) {
	k := newTestKey(t, testOrigin)
	l, _ := openTestLog(t, k)
	w := NewWitness(k.verifier)
	if _, ok := w.Latest(); ok {
		t.Fatal("new witness has a latest checkpoint")
	}
	appendAll(t, l, syntheticEntry(0, "g"))
	first := checkpointOf(t, k, l)
	if err := w.Advance(first, nil); err != nil {
		t.Fatalf("first checkpoint (trust on first use): %v", err)
	}
	prev := first
	for i := 1; i < 40; i += 7 {
		for j := range 7 {
			appendAll(t, l, syntheticEntry(i+j, "g"))
		}
		cp := checkpointOf(t, k, l)
		proof, err := l.ConsistencyProof(prev.Size, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Advance(cp, proof); err != nil {
			t.Fatalf("advance %d -> %d: %v", prev.Size, cp.Size, err)
		}
		if err := w.Advance(cp, nil); err != nil {
			t.Fatalf("same checkpoint again: %v", err)
		}
		prev = cp
	}
	if got, _ := w.Latest(); got.Size != prev.Size || got.Root != prev.Root {
		t.Fatalf("latest (%d, %s), want (%d, %s)", got.Size, got.Root, prev.Size, prev.Root)
	}

	// Rollback: an older checkpoint is refused and Latest stays.
	if err := w.Advance(first, nil); ReasonOf(err) != ReasonRollback {
		t.Fatalf("rollback: %v", err)
	}
	if got, _ := w.Latest(); got.Size != prev.Size {
		t.Fatalf("rollback moved latest to %d", got.Size)
	}

	// A wrong proof for a real, larger checkpoint is refused.
	appendAll(t, l, syntheticEntry(100, "g"))
	next := checkpointOf(t, k, l)
	proof, _ := l.ConsistencyProof(prev.Size, next.Size)
	proof[0][0] ^= 1
	if err := w.Advance(next, proof); ReasonOf(err) != ReasonInconsistent {
		t.Fatalf("corrupted proof: %v", err)
	}
	// A checkpoint by another key is refused before anything else.
	other := newTestKey(t, testOrigin)
	ol, _ := openTestLog(t, other)
	appendAll(t, ol, syntheticEntry(0, "o"))
	if err := w.Advance(checkpointOf(t, other, ol), nil); ReasonOf(err) != ReasonBadSignature {
		t.Fatalf("other key's checkpoint: %v", err)
	}
	// A hand-built checkpoint that does not match its note is refused.
	fake := next
	fake.Size++
	if err := w.Advance(fake, nil); ReasonOf(err) != ReasonMalformedCheckpoint {
		t.Fatalf("fields not matching the note: %v", err)
	}
}

// forkedLogs returns two logs with the same key that agree on the first
// common entries and differ after.
func forkedLogs(t *testing.T, k testKey, common, extra int) (a, b *Log) {
	t.Helper()
	a, _ = openTestLog(t, k)
	b, _ = openTestLog(t, k)
	for i := range common {
		appendAll(t, a, syntheticEntry(i, "common"))
		appendAll(t, b, syntheticEntry(i, "common"))
	}
	for i := range extra {
		appendAll(t, a, syntheticEntry(common+i, "fork-a"))
		appendAll(t, b, syntheticEntry(common+i, "fork-b"))
	}
	return a, b
}

func TestWitnessRefusesInconsistentHistory(t *testing.T) {
	k := newTestKey(t, testOrigin)
	a, b := forkedLogs(t, k, 5, 3)
	w := NewWitness(k.verifier)
	if err := w.Advance(checkpointOf(t, k, a), nil); err != nil {
		t.Fatal(err)
	}
	// b grows past a's size on its own branch: whatever proof it offers,
	// it cannot extend a.
	appendAll(t, b, syntheticEntry(50, "fork-b"), syntheticEntry(51, "fork-b"))
	cpb := checkpointOf(t, k, b)
	proof, err := b.ConsistencyProof(a.Size(), b.Size())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Advance(cpb, proof); ReasonOf(err) != ReasonInconsistent {
		t.Fatalf("forked history: %v", err)
	}
	if got, _ := w.Latest(); got.Root != checkpointOf(t, k, a).Root {
		t.Fatal("inconsistent checkpoint moved latest")
	}
}

func TestWitnessDetectsSplitView(t *testing.T) {
	k := newTestKey(t, testOrigin)
	a, b := forkedLogs(t, k, 4, 2)
	cpa, cpb := checkpointOf(t, k, a), checkpointOf(t, k, b)
	if cpa.Size != cpb.Size || cpa.Root == cpb.Root {
		t.Fatal("fixture: want two roots for one size")
	}
	w := NewWitness(k.verifier)
	if err := w.Advance(cpa, nil); err != nil {
		t.Fatal(err)
	}
	var sv *SplitViewError
	err := w.Advance(cpb, nil)
	if !errors.As(err, &sv) {
		t.Fatalf("split view at the latest size: %v", err)
	}
	if sv.Size != cpa.Size || sv.Roots != [2]Hash{cpa.Root, cpb.Root} || string(sv.Notes[0]) != string(cpa.Signed) || string(sv.Notes[1]) != string(cpb.Signed) {
		t.Fatalf("split view error lacks its evidence: %+v", sv)
	}
	// Both notes verify: the evidence is checkable by anyone.
	for _, n := range sv.Notes {
		if _, err := k.verifier.ParseCheckpoint(n); err != nil {
			t.Fatalf("evidence does not verify: %v", err)
		}
	}

	// A split view at an older size, seen through an inclusion proof.
	w2 := NewWitness(k.verifier)
	if err := w2.Observe(cpa); err != nil {
		t.Fatal(err)
	}
	appendAll(t, a, syntheticEntry(99, "more"))
	grown := checkpointOf(t, k, a)
	if err := w2.Advance(grown, nil); err != nil {
		t.Fatal(err)
	}
	if err := w2.Observe(cpb); !errors.As(err, &sv) || sv.Size != cpb.Size {
		t.Fatalf("split view at an older size: %v", err)
	}
}

func TestWitnessStateRoundTrip(t *testing.T) {
	k := newTestKey(t, testOrigin)
	a, b := forkedLogs(t, k, 3, 1)
	w := NewWitness(k.verifier)
	if err := w.Advance(checkpointOf(t, k, a), nil); err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(w.State())
	if err != nil {
		t.Fatal(err)
	}
	var s WitnessState
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	w2, err := RestoreWitness(k.verifier, s)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := w2.Latest(); !ok || got.Size != a.Size() {
		t.Fatal("restored witness lost its latest checkpoint")
	}
	var sv *SplitViewError
	if err := w2.Advance(checkpointOf(t, k, b), nil); !errors.As(err, &sv) {
		t.Fatalf("restored witness missed a split view: %v", err)
	}
	other := newTestKey(t, "other.example/log")
	if _, err := RestoreWitness(other.verifier, s); ReasonOf(err) != ReasonMalformedWitnessFile {
		t.Fatalf("state of another log: %v", err)
	}
	s.Seen = append(s.Seen, s.Seen[0])
	if _, err := RestoreWitness(k.verifier, s); ReasonOf(err) != ReasonMalformedWitnessFile {
		t.Fatalf("duplicate size: %v", err)
	}
}

func TestVerifyCertificateIncluded(t *testing.T) {
	k := newTestKey(t, testOrigin)
	l, _ := openTestLog(t, k)
	ca := testca.New(t, "corp.example")
	var ders [][]byte
	for _, h := range []string{"one", "two", "three", "four", "five"} {
		b := issueMachine(t, ca, h)
		ders = append(ders, b.Machine.Raw)
		appendAll(t, l, CertificateEntry(b.Machine.Raw, b.Intermediates[0].Raw), syntheticEntry(len(ders), "v"))
	}
	bundle, err := l.InclusionBundle(4) // "three"
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyCertificateIncluded(ders[2], bundle, k.verifier); err != nil {
		t.Fatalf("logged certificate: %v", err)
	}
	// Another certificate with this bundle, and an unlogged one.
	if err := VerifyCertificateIncluded(ders[1], bundle, k.verifier); ReasonOf(err) != ReasonBadInclusionProof {
		t.Fatalf("other certificate: %v", err)
	}
	unlogged := issueMachine(t, ca, "ghost").Machine.Raw
	if err := VerifyCertificateIncluded(unlogged, bundle, k.verifier); ReasonOf(err) != ReasonBadInclusionProof {
		t.Fatalf("unlogged certificate: %v", err)
	}
	// A bundle whose size disagrees with its checkpoint, a proof for
	// another index, and another log's checkpoint.
	b2 := bundle
	b2.TreeSize--
	if err := VerifyCertificateIncluded(ders[2], b2, k.verifier); ReasonOf(err) != ReasonMalformedBundle {
		t.Fatalf("wrong tree size: %v", err)
	}
	b3 := bundle
	b3.Index = 2
	if err := VerifyCertificateIncluded(ders[2], b3, k.verifier); ReasonOf(err) != ReasonBadInclusionProof {
		t.Fatalf("wrong index: %v", err)
	}
	other := newTestKey(t, testOrigin)
	if err := VerifyCertificateIncluded(ders[2], bundle, other.verifier); ReasonOf(err) != ReasonBadSignature {
		t.Fatalf("other key: %v", err)
	}
	b4 := bundle
	b4.Proof = nil
	if err := VerifyCertificateIncluded(ders[2], b4, k.verifier); ReasonOf(err) != ReasonBadInclusionProof {
		t.Fatalf("no proof: %v", err)
	}

	// Through a witness: a bundle against a forked tree is a split view.
	w := NewWitness(k.verifier)
	if err := w.Advance(checkpointOf(t, k, l), nil); err != nil {
		t.Fatal(err)
	}
	if err := w.VerifyCertificate(ders[2], bundle); err != nil {
		t.Fatal(err)
	}
	fork, _ := openTestLog(t, k)
	es, _ := l.Entries(0, l.Size())
	for i, e := range es {
		entry := Entry{Kind: KindCertificate}
		if parsed, _ := ParseLeaf(e.Leaf); parsed.Kind == KindCertificate {
			entry = CertificateEntry(parsed.Certificate)
		} else {
			entry = syntheticEntry(i+1000, "fork") // replaces the other entries
		}
		appendAll(t, fork, entry)
	}
	fb, err := fork.InclusionBundle(4)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyCertificateIncluded(ders[2], fb, k.verifier); err != nil {
		t.Fatalf("the fork's proof is valid on its own: %v", err)
	}
	var sv *SplitViewError
	if err := w.VerifyCertificate(ders[2], fb); !errors.As(err, &sv) {
		t.Fatalf("fork seen through an inclusion bundle: %v", err)
	}
}

// A witness whose new state cannot be saved does not move: Latest stays as
// it was (the new root is kept as seen, as Observe would), and a later
// save that works moves it.
func TestWitnessAdvanceAndSaveFailureKeepsLatest(t *testing.T) {
	k := newTestKey(t, testOrigin)
	l, _ := openTestLog(t, k)
	appendAll(t, l, syntheticEntry(0, "s"), syntheticEntry(1, "s"))
	first := checkpointOf(t, k, l)
	var saved []WitnessState
	save := func(s WitnessState) error { saved = append(saved, s); return nil }
	w := NewWitness(k.verifier)
	if err := w.AdvanceAndSave(first, nil, save); err != nil || len(saved) != 1 {
		t.Fatalf("first checkpoint: %v (saved %d times)", err, len(saved))
	}
	before := w.State().Latest
	appendAll(t, l, syntheticEntry(2, "s"), syntheticEntry(3, "s"))
	next := checkpointOf(t, k, l)
	proof, err := l.ConsistencyProof(first.Size, next.Size)
	if err != nil {
		t.Fatal(err)
	}
	diskFull := errors.New("no space left on device")
	if err := w.AdvanceAndSave(next, proof, func(WitnessState) error { return diskFull }); !errors.Is(err, diskFull) {
		t.Fatalf("advance with a failing save: %v, want the save's error", err)
	}
	if got, _ := w.Latest(); got.Size != first.Size || got.Root != first.Root {
		t.Fatalf("latest moved to %d although its state was not saved", got.Size)
	}
	if after := w.State().Latest; string(after) != string(before) {
		t.Fatalf("the latest checkpoint in the state changed by a failed advance:\n%s\nwant\n%s", after, before)
	}
	if err := w.AdvanceAndSave(next, proof, save); err != nil {
		t.Fatalf("advance once saving works: %v", err)
	}
	if got, _ := w.Latest(); got.Size != next.Size || len(saved) != 2 || saved[1].Latest == nil {
		t.Fatalf("latest %d after a working save (saved %d), want %d", got.Size, len(saved), next.Size)
	}
	// The same checkpoint again saves nothing.
	if err := w.AdvanceAndSave(next, nil, func(WitnessState) error { return diskFull }); err != nil {
		t.Fatalf("same checkpoint again: %v", err)
	}
}
