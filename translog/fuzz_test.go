package translog

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/certmesh/certmesh/internal/fuzzedit"
	"github.com/certmesh/certmesh/tstest/testca"
)

// FuzzParseLeaf: entries come from the CA's log endpoints (auditors,
// agents). ParseLeaf must never panic, and accept only the one canonical
// encoding: whatever it accepts marshals back to the same bytes.
func FuzzParseLeaf(f *testing.F) {
	ca := testca.New(f, "corp.example")
	b := issueMachine(f, ca, "fuzz")
	for i := range 6 {
		leaf, err := syntheticEntry(i, "fuzz").MarshalLeaf()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(leaf)
	}
	leaf, err := CertificateEntry(b.Machine.Raw).MarshalLeaf()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(leaf)
	f.Add([]byte{})
	f.Add([]byte{LeafVersion})
	f.Fuzz(func(t *testing.T, leaf []byte) {
		e, err := ParseLeaf(leaf)
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("ParseLeaf error %v has no reason", err)
			}
			return
		}
		again, err := e.MarshalLeaf()
		if err != nil {
			t.Fatalf("ParseLeaf accepted an entry MarshalLeaf refuses: %v (%x)", err, leaf)
		}
		if !bytes.Equal(again, leaf) {
			t.Fatalf("ParseLeaf accepted a non-canonical leaf:\n in  %x\n out %x", leaf, again)
		}
	})
}

// FuzzParseCheckpointText: the body of a checkpoint a coordinator relays.
// Whatever parses is the canonical text of what it parsed to.
func FuzzParseCheckpointText(f *testing.F) {
	f.Add(checkpointText(testOrigin, 0, emptyRoot))
	f.Add(checkpointText(testOrigin, 7, Hash{1, 2, 3}))
	f.Add(checkpointText(testOrigin, 1<<40, Hash{0xff}) + "extension line\n")
	f.Add("origin\n01\nAAAA\n")
	f.Fuzz(func(t *testing.T, text string) {
		cp, err := parseCheckpointText(text)
		if err != nil {
			if ReasonOf(err) != ReasonMalformedCheckpoint {
				t.Fatalf("error %v is not %s", err, ReasonMalformedCheckpoint)
			}
			return
		}
		want := checkpointText(cp.Origin, cp.Size, cp.Root)
		if !bytes.HasPrefix([]byte(text), []byte(want)) {
			t.Fatalf("parsed %q as %d/%s, whose canonical text %q does not start it", text, cp.Size, cp.Root, want)
		}
	})
}

// FuzzVerifyCertificate: an inclusion proof relayed by the coordinator
// next to a peer's certificate. Only the genuine proof of the genuine
// certificate passes; nothing panics.
//
// Every process (each fuzz worker runs this set-up again) has a log key,
// a CA and a certificate of its own: the fuzzer edits this process's
// genuine bundle (its JSON, and also its proof hashes and its signed
// checkpoint after decoding, which the JSON holds in base64) and
// certificate. No edits is the genuine pair, which must verify.
func FuzzVerifyCertificate(f *testing.F) {
	k := newTestKey(f, testOrigin)
	l, _ := openTestLog(f, k)
	ca := testca.New(f, "corp.example")
	b := issueMachine(f, ca, "fuzz")
	der := b.Machine.Raw
	appendAll(f, l, syntheticEntry(0, "a"), syntheticEntry(1, "b"))
	idx, err := l.Append(context.Background(), CertificateEntry(der))
	if err != nil {
		f.Fatal(err)
	}
	appendAll(f, l, syntheticEntry(2, "c"))
	genuine, err := l.InclusionBundle(idx)
	if err != nil {
		f.Fatal(err)
	}
	good, err := json.Marshal(genuine)
	if err != nil {
		f.Fatal(err)
	}
	var decoded InclusionBundle
	if err := json.Unmarshal(good, &decoded); err != nil {
		f.Fatal(err)
	}
	if err := NewWitness(k.verifier).VerifyCertificate(der, decoded); err != nil {
		f.Fatalf("the genuine certificate and bundle are refused: %v", err)
	}
	if len(genuine.Proof) == 0 {
		f.Fatal("the genuine bundle has no proof hashes to edit")
	}
	index := bytes.Index(good, []byte(`"index":`))
	if index < 0 {
		f.Fatalf("no index in %s", good)
	}
	index += len(`"index":`)
	proofLen := len(genuine.Proof) * HashSize
	none := []byte(nil)
	f.Add(none, none, none, none)
	f.Add(fuzzedit.Xor(index, 1), none, none, none)                     // another index
	f.Add(fuzzedit.Xor(len(good)/2, 1), none, none, none)               // inside the JSON
	f.Add(fuzzedit.Cut(len(good)/2), none, none, none)                  // truncated JSON
	f.Add(fuzzedit.Insert(1, ' '), none, none, none)                    // still the genuine bundle
	f.Add(fuzzedit.Insert(index, '1'), none, none, none)                // index 12
	f.Add(none, fuzzedit.Xor(len(der)/2, 1), none, none)                // another certificate
	f.Add(none, fuzzedit.Xor(len(der)-1, 0x80), none, none)             // its signature
	f.Add(none, fuzzedit.Cut(len(der)-1), none, none)                   // truncated certificate
	f.Add(none, fuzzedit.Insert(len(der), 0), none, none)               // trailing data
	f.Add(none, none, fuzzedit.Xor(0, 1), none)                         // first proof hash
	f.Add(none, none, fuzzedit.Xor(proofLen-1, 1), none)                // last proof hash
	f.Add(none, none, fuzzedit.Cut(proofLen-HashSize), none)            // a hash short
	f.Add(none, none, fuzzedit.Insert(proofLen, 0), none)               // a byte more
	f.Add(none, none, none, fuzzedit.Xor(len(testOrigin)+1, 1))         // the tree size
	f.Add(none, none, none, fuzzedit.Xor(len(genuine.Checkpoint)-2, 1)) // the signature
	f.Add(none, none, none, fuzzedit.Cut(len(genuine.Checkpoint)/2))
	f.Fuzz(func(t *testing.T, bundleEdits, derEdits, proofEdits, checkpointEdits []byte) {
		var ib InclusionBundle
		if json.Unmarshal(fuzzedit.Apply(good, bundleEdits), &ib) != nil {
			return
		}
		if len(proofEdits) > 0 {
			ib.Proof = editHashes(ib.Proof, proofEdits)
		}
		if len(checkpointEdits) > 0 {
			ib.Checkpoint = fuzzedit.Apply(ib.Checkpoint, checkpointEdits)
		}
		cert := fuzzedit.Apply(der, derEdits)
		w := NewWitness(k.verifier)
		if err := w.VerifyCertificate(cert, ib); err != nil {
			return
		}
		if !bytes.Equal(cert, der) {
			t.Fatalf("a proof for a certificate the log does not hold was accepted: %x", cert)
		}
		if ib.Index != genuine.Index {
			t.Fatalf("accepted at index %d, the certificate is entry %d", ib.Index, genuine.Index)
		}
	})
}

// editHashes applies edits to the concatenated proof hashes and cuts the
// result into HashSize pieces again (the last one may be short).
func editHashes(proof [][]byte, edits []byte) [][]byte {
	flat := fuzzedit.Apply(bytes.Join(proof, nil), edits)
	var out [][]byte
	for len(flat) > 0 {
		n := min(len(flat), HashSize)
		out = append(out, flat[:n:n])
		flat = flat[n:]
	}
	return out
}
