package translog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math/big"
	"reflect"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/testca"
)

func TestLeafRoundTrip(t *testing.T) {
	ca := testca.New(t, "corp.example")
	m := issueMachine(t, ca, "one")
	u := ca.IssueUser(t, m)
	entries := []Entry{
		CertificateEntry(m.Machine.Raw),
		CertificateEntry(u.User.Raw),
		RevocationEntry(Revocation{Serial: m.Machine.SerialNumber, Time: time.Unix(1_700_000_000, 0).UTC(), Reason: ReasonKeyCompromise, Device: testDevice}),
		RevocationEntry(Revocation{Serial: big.NewInt(1), Time: time.Unix(1, 0).UTC(), Reason: ReasonUnspecified, Device: testDevice, Email: "a.b@example.com"}),
		PolicyEntry(42, []byte("signed policy"), time.Unix(1_700_000_000, 0).UTC()),
	}
	for _, e := range entries {
		leaf, err := e.MarshalLeaf()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseLeaf(leaf)
		if err != nil {
			t.Fatalf("%s: %v", e.Kind, err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("%s: round trip gave %+v, want %+v", e.Kind, got, e)
		}
		again, _ := got.MarshalLeaf()
		if !bytes.Equal(again, leaf) {
			t.Fatalf("%s: not canonical", e.Kind)
		}
	}
	if CertificateKindOf(t, m.Machine.Raw) != "machine" || CertificateKindOf(t, u.User.Raw) != "user" {
		t.Fatal("CertificateKind does not tell machine from user")
	}
}

func CertificateKindOf(t *testing.T, der []byte) string {
	t.Helper()
	b, err := certs.ParseBundle(certs.WireBundle{Machine: der})
	if err != nil {
		t.Fatal(err)
	}
	return CertificateKind(b.Machine)
}

// TestLeafGolden pins the encoding: changing it breaks every deployed log.
func TestLeafGolden(t *testing.T) {
	cases := []struct {
		e   Entry
		hex string
	}{
		{CertificateEntry([]byte{0x30, 0x00}), "0101000002" + "3000"},
		{RevocationEntry(Revocation{Serial: big.NewInt(0x0102), Time: time.Unix(0x10, 0), Reason: ReasonSuperseded, Device: "abcdefghijklmnop", Email: "a@b.cd"}),
			"0102" + "020102" + "0000000000000010" + "04" + "10" + hex.EncodeToString([]byte("abcdefghijklmnop")) + "06" + hex.EncodeToString([]byte("a@b.cd"))},
		{Entry{Kind: KindPolicy, Policy: &PolicyVersion{Version: 7, SHA256: sha256.Sum256(nil), Published: time.Unix(0x20, 0)}},
			"0103" + "0000000000000007" + "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" + "0000000000000020"},
	}
	for _, c := range cases {
		leaf, err := c.e.MarshalLeaf()
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(leaf); got != c.hex {
			t.Errorf("%s leaf\n got %s\nwant %s", c.e.Kind, got, c.hex)
		}
	}
}

func TestParseLeafRefusesNonCanonical(t *testing.T) {
	good, _ := RevocationEntry(Revocation{Serial: big.NewInt(0x0102), Time: time.Unix(0x10, 0), Reason: ReasonSuperseded, Device: testDevice}).MarshalLeaf()
	mutate := func(f func([]byte) []byte) []byte { return f(bytes.Clone(good)) }
	bad := map[string][]byte{
		"empty":            nil,
		"version 2":        mutate(func(b []byte) []byte { b[0] = 2; return b }),
		"unknown kind":     mutate(func(b []byte) []byte { b[1] = 9; return b }),
		"trailing byte":    append(bytes.Clone(good), 0),
		"truncated":        good[:len(good)-1],
		"leading zero":     append([]byte{1, 2, 3, 0, 1, 2}, good[5:]...),
		"zero serial":      append([]byte{1, 2, 0}, good[5:]...),
		"reason 7":         mutate(func(b []byte) []byte { b[13] = 7; return b }),
		"time 0":           mutate(func(b []byte) []byte { copy(b[5:13], make([]byte, 8)); return b }),
		"bad device":       mutate(func(b []byte) []byte { b[15] = 'A'; return b }),
		"cert no DER":      {1, 1, 0, 0, 0},
		"cert short":       {1, 1, 0, 0, 5, 1},
		"policy version 0": append([]byte{1, 3, 0, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 40)...),
	}
	for name, leaf := range bad {
		if _, err := ParseLeaf(leaf); ReasonOf(err) != ReasonMalformedEntry {
			t.Errorf("%s: got %v, want %s", name, err, ReasonMalformedEntry)
		}
	}
	if _, err := ParseLeaf(good); err != nil {
		t.Fatalf("the unmutated leaf: %v", err)
	}
	// An email must be canonical.
	if _, err := RevocationEntry(Revocation{Serial: big.NewInt(1), Time: time.Unix(1, 0), Device: testDevice, Email: "A@example.com"}).MarshalLeaf(); ReasonOf(err) != ReasonMalformedEntry {
		t.Errorf("upper-case email: %v", err)
	}
}
