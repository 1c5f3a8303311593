package hostile_test

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/translog"
)

// logKeySigner is the CA's own log signing key, read from its state
// directory as a thief of the CA host would.
func (f *logFixture) logKeySigner(t *testing.T) note.Signer {
	t.Helper()
	skey, err := os.ReadFile(filepath.Join(f.StateDir, "log.key"))
	if err != nil {
		t.Fatal(err)
	}
	signer, vkey, err := translog.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		t.Fatal(err)
	}
	if vkey != f.CA.LogKey() {
		t.Fatalf("STATE/log.key is not the key of the CA's log")
	}
	return signer
}

// fork opens a second log signed with the CA's own log key, holding the
// first keep entries of the real log and then extra: a history the CA
// never published.
func (f *logFixture) fork(t *testing.T, keep uint64, extra ...translog.Entry) *translog.Log {
	t.Helper()
	return openLog(t, f.logKeySigner(t), append(f.realEntries(t, keep), extra...))
}

// openLog is a new log in a temporary file with entries, signed by signer.
func openLog(t *testing.T, signer note.Signer, entries []translog.Entry) *translog.Log {
	t.Helper()
	l, err := translog.Open(filepath.Join(t.TempDir(), "log.db"), signer, signer.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if len(entries) > 0 {
		if _, err := l.AppendBatch(t.Context(), entries); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// otherLogSigner is a fresh key under the name (origin) of the CA's log.
func otherLogSigner(t *testing.T, origin string) note.Signer {
	t.Helper()
	skey, _, err := translog.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, _, err := translog.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

// splitNote splits a signed note into its text and its signature lines.
func splitNote(t *testing.T, signed []byte) (text, sigs []byte) {
	t.Helper()
	i := bytes.Index(signed, []byte("\n\n"))
	if i < 0 {
		t.Fatalf("not a signed note: %q", signed)
	}
	return signed[:i+1], signed[i+2:]
}

// resign is the checkpoint's text signed by signer instead.
func resign(t *testing.T, signed []byte, signer note.Signer) []byte {
	t.Helper()
	text, _ := splitNote(t, signed)
	out, err := note.Sign(&note.Note{Text: string(text)}, signer)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// alteredRoot is the checkpoint with another root hash under its original
// signature.
func alteredRoot(t *testing.T, signed []byte) []byte {
	t.Helper()
	text, sigs := splitNote(t, signed)
	lines := strings.SplitAfter(string(text), "\n")
	root, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(lines[2], "\n"))
	if err != nil {
		t.Fatal(err)
	}
	root[0] ^= 1
	lines[2] = base64.StdEncoding.EncodeToString(root) + "\n"
	return append([]byte(strings.Join(lines, "")+"\n"), sigs...)
}

// certEntry is the log entry of the machine certificate of b.
func certEntry(b certs.Bundle) translog.Entry {
	var chain [][]byte
	for _, c := range b.Intermediates {
		chain = append(chain, c.Raw)
	}
	return translog.CertificateEntry(b.Machine.Raw, chain...)
}

// proofIn is l's inclusion bundle, against its current checkpoint, of the
// machine certificate of b.
func proofIn(t *testing.T, l *translog.Log, b certs.Bundle) *translog.InclusionBundle {
	t.Helper()
	h, err := translog.CertificateLeafHash(b.Machine.Raw)
	if err != nil {
		t.Fatal(err)
	}
	i, ok, err := l.Lookup(h)
	if err != nil || !ok {
		t.Fatalf("the certificate is not in the log (%v)", err)
	}
	ib, err := l.InclusionBundle(i)
	if err != nil {
		t.Fatal(err)
	}
	return &ib
}

func cloneInclusion(b *translog.InclusionBundle) *translog.InclusionBundle {
	c := *b
	c.Proof = make([][]byte, len(b.Proof))
	for i, h := range b.Proof {
		c.Proof[i] = bytes.Clone(h)
	}
	c.Checkpoint = bytes.Clone(b.Checkpoint)
	return &c
}
