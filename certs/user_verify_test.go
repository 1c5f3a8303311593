package certs_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/testca"
)

func TestVerifyUserAccepts(t *testing.T) {
	ca := testca.New(t, td)
	machine, _ := ca.IssueMachine(t, ca.NewProfile(t, "laptop"))
	b := ca.IssueUser(t, machine, testca.WithGroups("eng"))
	// A second intermediate of the same root, as after a rotation.
	rotated, err := certs.NewIntermediate(ca.Root(), td, testca.DefaultOverlays, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	fromRotated := ca.IssueUser(t, machine, testca.WithIssuer(rotated))
	tests := []struct {
		name   string
		bundle certs.Bundle
		at     time.Time
	}{
		{"just issued", b, time.Now()},
		{"at its NotAfter", b, b.User.NotAfter},
		{"at its NotBefore", b, b.User.NotBefore},
		{"issued by another intermediate of our root", fromRotated, time.Now()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := verifyWire(tt.bundle.Wire(), ca.Roots(), tt.at)
			if err != nil {
				t.Fatal(err)
			}
			if id.User == nil || id.UserRejected != nil {
				t.Fatalf("user rejected: %v", id.UserRejected)
			}
			if id.User.Serial != tt.bundle.User.SerialNumber.Text(16) {
				t.Errorf("serial %s, want %x", id.User.Serial, tt.bundle.User.SerialNumber)
			}
		})
	}

	// A machine certificate that fails still fails, whatever the user.
	expired, _ := ca.IssueMachine(t, ca.NewProfile(t, "old"), testca.WithValidity(time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)))
	if _, err := certs.Verify(ca.IssueUser(t, expired), ca.Roots(), nil, time.Now()); certs.ReasonOf(err) != certs.ReasonExpired {
		t.Errorf("expired machine with a valid user: %v, want %q", err, certs.ReasonExpired)
	}
}

func TestBundleWithUserOnTheWire(t *testing.T) {
	ca := testca.New(t, td)
	machine, _ := ca.IssueMachine(t, ca.NewProfile(t, "laptop"))
	inter := ca.Intermediate().Cert.Raw

	// Without a user, the encoding is what it was before user certificates.
	js, err := json.Marshal(machine.Wire())
	if err != nil {
		t.Fatal(err)
	}
	old, err := json.Marshal(struct {
		Machine       []byte   `json:"machine"`
		Intermediates [][]byte `json:"intermediates,omitempty"`
	}{machine.Machine.Raw, [][]byte{inter}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(js, old) {
		t.Errorf("bundle without a user encodes as\n%s\nwant\n%s", js, old)
	}
	var w certs.WireBundle
	if err := json.Unmarshal(old, &w); err != nil || w.User != nil {
		t.Fatalf("old encoding decodes to user %x, %v", w.User, err)
	}
	if b, err := certs.ParseBundle(w); err != nil || b.User != nil {
		t.Fatalf("old encoding parses to user %v, %v", b.User, err)
	}

	// With one, it round-trips through JSON.
	b := ca.IssueUser(t, machine)
	js, err = json.Marshal(b.Wire())
	if err != nil {
		t.Fatal(err)
	}
	w = certs.WireBundle{}
	if err := json.Unmarshal(js, &w); err != nil {
		t.Fatal(err)
	}
	if id, err := verifyWire(w, ca.Roots(), time.Now()); err != nil || id.User == nil {
		t.Fatalf("JSON round trip: %v, rejected %v", err, id.UserRejected)
	}

	// The user certificate counts towards MaxBundleCerts.
	full := certs.WireBundle{Machine: machine.Machine.Raw, User: b.User.Raw}
	for range certs.MaxBundleCerts - 2 {
		full.Intermediates = append(full.Intermediates, inter)
	}
	if _, err := verifyWire(full, ca.Roots(), time.Now()); err != nil {
		t.Errorf("bundle of MaxBundleCerts certificates with a user: %v", err)
	}
	full.Intermediates = append(full.Intermediates, inter)
	if _, err := certs.ParseBundle(full); certs.ReasonOf(err) != certs.ReasonMalformed {
		t.Errorf("bundle of MaxBundleCerts+1 certificates with a user: %v, want malformed", err)
	}

	// A user certificate that does not parse makes the bundle malformed.
	dup := ca.IssueUserWire(t, machine, testca.WithDuplicateExtension(certs.OIDDeviceBinding))
	for name, user := range map[string][]byte{
		"garbage":              []byte("not a certificate"),
		"truncated":            b.User.Raw[:len(b.User.Raw)/2],
		"trailing bytes":       append(bytes.Clone(b.User.Raw), 0),
		"empty":                {},
		"oversized":            make([]byte, certs.MaxCertSize+1),
		"duplicated extension": dup.User,
	} {
		w := machine.Wire()
		w.User = user
		if _, err := certs.ParseBundle(w); certs.ReasonOf(err) != certs.ReasonMalformed {
			t.Errorf("%s user certificate: %v, want malformed", name, err)
		}
	}
}
