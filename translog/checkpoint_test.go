package translog

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func TestCheckpointFormatAndSignature(t *testing.T) {
	k := newTestKey(t, testOrigin)
	l, _ := openTestLog(t, k)
	appendAll(t, l, syntheticEntry(0, "f"), syntheticEntry(1, "f"))
	signed := l.Checkpoint()
	cp, err := k.verifier.ParseCheckpoint(signed)
	if err != nil {
		t.Fatal(err)
	}
	// C2SP tlog-checkpoint: origin, size, base64 root, blank line, signature.
	want := testOrigin + "\n2\n" + cp.Root.String() + "\n\n— " + testOrigin + " "
	if !strings.HasPrefix(string(signed), want) {
		t.Fatalf("checkpoint is not a C2SP checkpoint:\n%s", signed)
	}
	if !bytes.Equal(cp.Signed, signed) || cp.Origin != testOrigin || cp.Size != 2 {
		t.Fatalf("parsed %+v", cp)
	}

	// Another key refuses it.
	other := newTestKey(t, testOrigin)
	if _, err := other.verifier.ParseCheckpoint(signed); ReasonOf(err) != ReasonBadSignature {
		t.Fatalf("wrong key: %v", err)
	}
	// A changed body breaks the signature.
	forged := bytes.Replace(signed, []byte("\n2\n"), []byte("\n3\n"), 1)
	if _, err := k.verifier.ParseCheckpoint(forged); ReasonOf(err) != ReasonBadSignature {
		t.Fatalf("forged size: %v", err)
	}
	// A flipped signature bit too.
	sigAt := bytes.LastIndex(signed, []byte(" ")) + 10
	flipped := bytes.Clone(signed)
	flipped[sigAt] ^= 0x01
	if _, err := k.verifier.ParseCheckpoint(flipped); ReasonOf(err) == "" {
		t.Fatalf("flipped signature accepted")
	}
	// Garbage and oversize notes are malformed.
	for _, g := range [][]byte{nil, []byte("hello"), bytes.Repeat([]byte("a"), 10000)} {
		if _, err := k.verifier.ParseCheckpoint(g); ReasonOf(err) != ReasonMalformedCheckpoint {
			t.Fatalf("garbage %q: %v", g[:min(len(g), 10)], err)
		}
	}
}

// signText signs an arbitrary checkpoint body with k.
func signText(t *testing.T, k testKey, text string) []byte {
	t.Helper()
	b, err := note.Sign(&note.Note{Text: text}, k.signer)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseCheckpointBody(t *testing.T) {
	k := newTestKey(t, testOrigin)
	root := mth([][]byte{[]byte("x")}).String()
	good := testOrigin + "\n1\n" + root + "\n"
	if _, err := k.verifier.ParseCheckpoint(signText(t, k, good)); err != nil {
		t.Fatal(err)
	}
	if _, err := k.verifier.ParseCheckpoint(signText(t, k, good+"extension line\n")); err != nil {
		t.Fatalf("extension line refused: %v", err)
	}
	bad := map[string]string{
		"two lines":     testOrigin + "\n1\n",
		"leading zero":  testOrigin + "\n01\n" + root + "\n",
		"negative":      testOrigin + "\n-1\n" + root + "\n",
		"short root":    testOrigin + "\n1\nAAAA\n",
		"hex root":      testOrigin + "\n1\n" + strings.Repeat("ab", 32) + "\n",
		"empty ext":     testOrigin + "\n1\n" + root + "\n\n",
		"empty nonzero": testOrigin + "\n0\n" + root + "\n",
	}
	for name, text := range bad {
		if _, err := k.verifier.ParseCheckpoint(signText(t, k, text)); ReasonOf(err) != ReasonMalformedCheckpoint {
			t.Errorf("%s: got %v, want %s", name, err, ReasonMalformedCheckpoint)
		}
	}
	// Signed by the log's key, but naming another log on its first line.
	wrong := signText(t, k, "other.example/log\n1\n"+root+"\n")
	if _, err := k.verifier.ParseCheckpoint(wrong); ReasonOf(err) != ReasonWrongOrigin {
		t.Errorf("other origin: %v", err)
	}
}

func TestKeys(t *testing.T) {
	if _, _, err := GenerateKey("has space"); err == nil {
		t.Error("origin with a space accepted")
	}
	if _, _, err := GenerateKey("a+b"); err == nil {
		t.Error("origin with '+' accepted")
	}
	if _, err := NewVerifier("garbage"); err == nil {
		t.Error("garbage verifier key accepted")
	}
	if _, _, err := NewSigner("PRIVATE+KEY+x+00000000+AAAA"); err == nil {
		t.Error("garbage signer key accepted")
	}
	k := newTestKey(t, testOrigin)
	if k.verifier.Origin() != testOrigin || k.verifier.Key() != k.vkey {
		t.Errorf("verifier origin %q key %q", k.verifier.Origin(), k.verifier.Key())
	}
	if Origin("corp.example") != testOrigin {
		t.Errorf("Origin(corp.example) = %q", Origin("corp.example"))
	}
}

func TestVerifyConsistencyEdges(t *testing.T) {
	k := newTestKey(t, testOrigin)
	v := k.verifier
	a := Checkpoint{Origin: testOrigin, Size: 3, Root: mth([][]byte{{1}, {2}, {3}})}
	b := Checkpoint{Origin: testOrigin, Size: 3, Root: mth([][]byte{{1}, {2}, {4}})}
	var sv *SplitViewError
	if err := v.VerifyConsistency(a, b, nil); !errors.As(err, &sv) || sv.Size != 3 || ReasonOf(err) != ReasonSplitView {
		t.Fatalf("same size, different roots: %v", err)
	}
	if err := v.VerifyConsistency(a, a, nil); err != nil {
		t.Fatalf("same checkpoint: %v", err)
	}
	small := Checkpoint{Origin: testOrigin, Size: 2, Root: mth([][]byte{{1}, {2}})}
	if err := v.VerifyConsistency(a, small, nil); ReasonOf(err) != ReasonRollback {
		t.Fatalf("smaller: %v", err)
	}
	if err := v.VerifyConsistency(small, a, [][]byte{{1, 2, 3}}); ReasonOf(err) != ReasonMalformedProof {
		t.Fatalf("short proof hash: %v", err)
	}
	if err := v.VerifyConsistency(small, a, make([][]byte, 200)); ReasonOf(err) != ReasonMalformedProof {
		t.Fatalf("long proof: %v", err)
	}
	foreign := a
	foreign.Origin = "x/log"
	if err := v.VerifyConsistency(small, foreign, nil); ReasonOf(err) != ReasonWrongOrigin {
		t.Fatalf("foreign checkpoint: %v", err)
	}
	if err := v.VerifyInclusion(LeafHash([]byte{1}), 3, nil, a); ReasonOf(err) != ReasonOutOfRange {
		t.Fatalf("index beyond tree: %v", err)
	}
}
