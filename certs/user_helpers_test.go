package certs_test

import (
	"crypto/x509"
	"slices"
	"testing"
	"time"

	"go.step.sm/crypto/x509util"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/testca"
)

// userProfile is a complete user profile bound to machine.
func userProfile(t *testing.T, machine *x509.Certificate, email string, groups ...string) certs.UserProfile {
	t.Helper()
	e, err := certs.ParseEmail(email)
	if err != nil {
		t.Fatal(err)
	}
	gs, err := certs.ParseGroups(groups)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	p, err := certs.UserProfile{
		TrustDomain: td,
		UserID:      certs.DeriveUserID("https://idp.example", "sub-"+email),
		Email:       e,
		Groups:      gs,
		NotBefore:   now.Add(-time.Minute),
		NotAfter:    now.Add(certs.UserLifetime),
	}.BindToMachine(machine)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// signUser signs a rendered user template with the CA's intermediate.
func signUser(t *testing.T, ca *testca.CA, tmpl *x509.Certificate) *x509.Certificate {
	t.Helper()
	in := ca.Intermediate()
	c, err := x509util.CreateCertificate(tmpl, in.Cert, tmpl.PublicKey, in.Key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sortedSet is ss sorted, without duplicates: groups as a certificate
// carries them.
func sortedSet(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return slices.Compact(out)
}

// emailConstrainedCA is a test CA whose intermediate may certify only
// email addresses at the given domains.
func emailConstrainedCA(t *testing.T, domains ...string) *testca.CA {
	t.Helper()
	root, err := certs.NewRoot(td, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	inter, err := certs.NewIntermediate(root, td, testca.DefaultOverlays, time.Now(), certs.PermitEmailDomains(domains...))
	if err != nil {
		t.Fatal(err)
	}
	return testca.FromKeyPairs(t, td, root, inter)
}
