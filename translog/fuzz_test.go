package translog

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/certmesh/certmesh/internal/testca"
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
func FuzzVerifyCertificate(f *testing.F) {
	k := newTestKey(f, testOrigin)
	l, _ := openTestLog(f, k)
	ca := testca.New(f, "corp.example")
	b := issueMachine(f, ca, "fuzz")
	appendAll(f, l, syntheticEntry(0, "a"), syntheticEntry(1, "b"))
	idx, err := l.Append(context.Background(), CertificateEntry(b.Machine.Raw))
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
	f.Add(good, b.Machine.Raw)
	f.Add(good, b.Machine.Raw[:len(b.Machine.Raw)-1])
	f.Add([]byte(`{"index":1,"tree_size":4,"proof":[],"checkpoint":""}`), b.Machine.Raw)
	f.Fuzz(func(t *testing.T, bundle, der []byte) {
		var ib InclusionBundle
		if json.Unmarshal(bundle, &ib) != nil {
			return
		}
		w := NewWitness(k.verifier)
		if err := w.VerifyCertificate(der, ib); err != nil {
			return
		}
		if !bytes.Equal(der, b.Machine.Raw) {
			t.Fatalf("a proof for a certificate the log does not hold was accepted: %x", der)
		}
		if ib.Index != genuine.Index {
			t.Fatalf("accepted at index %d, the certificate is entry %d", ib.Index, genuine.Index)
		}
	})
}
