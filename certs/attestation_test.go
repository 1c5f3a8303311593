package certs_test

import (
	"crypto/x509/pkix"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/testca"
)

func TestAttestationExtension(t *testing.T) {
	ca := testca.New(t, td)
	for _, tc := range []struct {
		name  string
		value string
		ok    bool
		level certs.AttestationLevel
		ek    certs.EKFingerprint
	}{
		{"token", "token", true, certs.AttestationToken, ""},
		{"tpm with EK", "tpm;ek-sha256=" + string(testEK), true, certs.AttestationTPM, testEK},
		{"tpm without EK", "tpm", false, "", ""},
		{"token with EK", "token;ek-sha256=" + string(testEK), false, "", ""},
		{"short EK", "tpm;ek-sha256=abcd", false, "", ""},
		{"upper-case EK", "tpm;ek-sha256=0F1E2D3C4B5A69788796A5B4C3D2E1F00F1E2D3C4B5A69788796A5B4C3D2E1F0", true, certs.AttestationTPM, testEK},
		{"unknown level", "hsm", false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := ca.IssueMachine(t, ca.NewProfile(t, "alpha"),
				testca.WithExtension(pkix.Extension{Id: certs.OIDAttestation, Value: testca.UTF8String(tc.value)}))
			id, err := certs.Verify(b, ca.Roots(), nil, time.Now())
			if !tc.ok {
				if certs.ReasonOf(err) != certs.ReasonProfile {
					t.Fatalf("Verify = %v, want a profile rejection", err)
				}
				return
			}
			if err != nil || id.Attestation != tc.level || id.EK != tc.ek {
				t.Fatalf("Verify = %+v, %v; want level %q EK %q", id, err, tc.level, tc.ek)
			}
		})
	}
	if _, err := certs.ParseEKFingerprint("zz"); err == nil {
		t.Fatal("ParseEKFingerprint accepted garbage")
	}
}
