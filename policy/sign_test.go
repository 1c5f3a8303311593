package policy

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/testca"
)

const td = certs.TrustDomain("corp.example")

const signedSrc = `// version under test
{
	"tagOwners": {"tag:db": []},
	"rules": [{"name": "db", "from": ["*"], "to": ["tag:db"], "ports": ["tcp:5432"]}],
	"tests": [
		{"from": "host:a", "to": "tag:db:5432", "expect": "accept"},
		{"from": "host:a", "to": "tag:db:22", "expect": "drop"},
	],
}
`

type pki struct {
	ca     *testca.CA
	signer *certs.KeyPair
}

func newPKI(t *testing.T) pki {
	t.Helper()
	ca := testca.New(t, td)
	s, err := NewPolicySigningCertificate(ca.Root(), td, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return pki{ca: ca, signer: s}
}

func (p pki) sign(t *testing.T, version uint64, src string, now time.Time) *SignedPolicy {
	t.Helper()
	d, err := Sign(version, []byte(src), p.signer.Key, []*x509.Certificate{p.signer.Cert}, now)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// resign replaces the document's chain and signs it with key, bypassing
// Sign's checks, as a forger would.
func resign(t *testing.T, d *SignedPolicy, key crypto.Signer, chain ...*x509.Certificate) *SignedPolicy {
	t.Helper()
	out := *d
	out.Chain = nil
	for _, c := range chain {
		out.Chain = append(out.Chain, c.Raw)
	}
	sum := sha256.Sum256(out.SignedMessage())
	sig, err := key.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	out.Signature = sig
	return &out
}

// makeCert issues a certificate from a template edited by edit, signed by
// parent (self-signed when nil).
func makeCert(t *testing.T, parent *certs.KeyPair, edit func(*x509.Certificate)) *certs.KeyPair {
	t.Helper()
	key, err := certs.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "forged policy signer"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{EKUPolicySigning},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{PolicySignerURI(td)},
	}
	if edit != nil {
		edit(tmpl)
	}
	pc, pk := tmpl, crypto.Signer(key)
	if parent != nil {
		pc, pk = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pc, key.Public(), pk)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &certs.KeyPair{Cert: c, Key: key}
}

func wantReason(t *testing.T, err error, want Reason) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want %s", want)
	}
	if got := ReasonOf(err); got != want {
		t.Fatalf("reason %q (%v), want %q", got, err, want)
	}
	if !strings.Contains(err.Error(), string(want)) {
		t.Fatalf("message %q does not name the reason", err)
	}
}

func TestNewPolicySigningCertificate(t *testing.T) {
	p := newPKI(t)
	c := p.signer.Cert
	if c.IsCA || !c.BasicConstraintsValid || c.KeyUsage != x509.KeyUsageDigitalSignature || len(c.ExtKeyUsage) != 0 ||
		len(c.UnknownExtKeyUsage) != 1 || !c.UnknownExtKeyUsage[0].Equal(EKUPolicySigning) {
		t.Fatalf("profile: CA %v, key usage %v, EKU %v %v", c.IsCA, c.KeyUsage, c.ExtKeyUsage, c.UnknownExtKeyUsage)
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://corp.example/policy" {
		t.Fatalf("URIs %v", c.URIs)
	}
	if err := c.CheckSignatureFrom(p.ca.Root().Cert); err != nil {
		t.Fatalf("not signed by the root: %v", err)
	}
	if c.NotAfter.Sub(c.NotBefore) < PolicySignerLifetime {
		t.Fatalf("lifetime %v", c.NotAfter.Sub(c.NotBefore))
	}
	if EKUPolicySigning.String() != certs.Arc.String()+".10" {
		t.Fatalf("EKU %s", EKUPolicySigning)
	}
	if _, err := NewPolicySigningCertificate(&certs.KeyPair{Cert: p.ca.Root().Cert}, td, time.Now()); err == nil {
		t.Fatal("made a signer without the root key")
	}
	if _, err := NewPolicySigningCertificate(p.ca.Root(), "Not A Domain", time.Now()); err == nil {
		t.Fatal("made a signer for a bad trust domain")
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	d := p.sign(t, 7, signedSrc, now)
	if d.Version != 7 || string(d.Policy) != signedSrc || !d.SignedAt.Equal(now.UTC().Truncate(time.Second)) || len(d.Chain) != 1 {
		t.Fatalf("%+v", d)
	}
	wire, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"version":7`, `"policy":`, `"signed_at":`, `"chain":[`, `"signature":`} {
		if !strings.Contains(string(wire), field) {
			t.Errorf("wire form lacks %s: %s", field, wire)
		}
	}
	got, err := ParseSignedPolicy(wire)
	if err != nil {
		t.Fatal(err)
	}
	for _, current := range []uint64{0, 1, 6} {
		pol, err := Verify(got, p.ca.Roots(), now, current)
		if err != nil {
			t.Fatalf("current %d: %v", current, err)
		}
		if !bytes.Equal(pol.Source, []byte(signedSrc)) || len(pol.Rules) != 1 {
			t.Fatalf("policy %+v", pol)
		}
	}
	if s, err := got.Signer(); err != nil || !s.Equal(p.signer.Cert) {
		t.Fatalf("Signer: %v", err)
	}
	// Within the clock skew, and at the end of the signer's life.
	if _, err := Verify(p.sign(t, 8, signedSrc, now.Add(MaxClockSkew-time.Minute)), p.ca.Roots(), now, 7); err != nil {
		t.Fatal(err)
	}
	end := p.signer.Cert.NotAfter
	if _, err := Verify(p.sign(t, 8, signedSrc, end.Add(-time.Minute)), p.ca.Roots(), end, 0); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyRefusesRollback(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	v1 := p.sign(t, 1, signedSrc, now.Add(-time.Minute))
	v2 := p.sign(t, 2, strings.Replace(signedSrc, "version under test", "version two", 1), now)
	if _, err := Verify(v2, p.ca.Roots(), now, 1); err != nil {
		t.Fatal(err)
	}
	_, err := Verify(v1, p.ca.Roots(), now, 2)
	wantReason(t, err, ReasonRollback)
	if !strings.Contains(err.Error(), "older than the version held, 2") {
		t.Fatal(err)
	}
	_, err = Verify(v2, p.ca.Roots(), now, 2)
	wantReason(t, err, ReasonRollback)
	if !strings.Contains(err.Error(), "is the one held") {
		t.Fatal(err)
	}
	// A replayed old document with its version raised is a forgery.
	bumped := *v1
	bumped.Version = 3
	_, err = Verify(&bumped, p.ca.Roots(), now, 2)
	wantReason(t, err, ReasonBadSignature)
}

func TestVerifyRefusesEdits(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	d := p.sign(t, 5, signedSrc, now)
	v6 := p.sign(t, 6, strings.Replace(signedSrc, "under test", "six", 1), now)
	edits := map[string]func(*SignedPolicy){
		"widened rule": func(d *SignedPolicy) {
			d.Policy = bytes.Replace(d.Policy, []byte(`"ports": ["tcp:5432"]`), []byte(`"ports": ["*"]`), 1)
		},
		"comment edited": func(d *SignedPolicy) {
			d.Policy = bytes.Replace(d.Policy, []byte("under test"), []byte("under Test"), 1)
		},
		"policy cut short":  func(d *SignedPolicy) { d.Policy = d.Policy[:len(d.Policy)-2] },
		"version raised":    func(d *SignedPolicy) { d.Version++ },
		"signing time":      func(d *SignedPolicy) { d.SignedAt = d.SignedAt.Add(-time.Second) },
		"valid-until moved": func(d *SignedPolicy) { d.ValidUntil = d.ValidUntil.Add(24 * time.Hour) },
		"signature flipped": func(d *SignedPolicy) { d.Signature[len(d.Signature)/2] ^= 1 },
		"signature of another version": func(d *SignedPolicy) {
			d.Signature = v6.Signature
		},
		"signature cut": func(d *SignedPolicy) { d.Signature = d.Signature[:len(d.Signature)-1] },
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			e := *d
			e.Policy = bytes.Clone(d.Policy)
			e.Signature = bytes.Clone(d.Signature)
			edit(&e)
			_, err := Verify(&e, p.ca.Roots(), now, 4)
			wantReason(t, err, ReasonBadSignature)
		})
	}
}

func TestVerifyRefusesOtherSigners(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	d := p.sign(t, 5, signedSrc, now)
	machine, machineKey := p.ca.IssueMachine(t, p.ca.NewProfile(t, "laptop"))
	other := testca.New(t, td)
	otherSigner, err := NewPolicySigningCertificate(other.Root(), td, now)
	if err != nil {
		t.Fatal(err)
	}
	byIntermediate := makeCert(t, p.ca.Intermediate(), nil)
	selfSigned := makeCert(t, nil, nil)
	otherDomain := makeCert(t, p.ca.Root(), func(c *x509.Certificate) { c.URIs = []*url.URL{PolicySignerURI("other.example")} })
	noURI := makeCert(t, p.ca.Root(), func(c *x509.Certificate) { c.URIs = nil })
	extraEKU := makeCert(t, p.ca.Root(), func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} })
	anyEKU := makeCert(t, p.ca.Root(), func(c *x509.Certificate) {
		c.UnknownExtKeyUsage = nil
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	})
	noEKU := makeCert(t, p.ca.Root(), func(c *x509.Certificate) { c.UnknownExtKeyUsage = nil })
	caWithEKU := makeCert(t, p.ca.Root(), func(c *x509.Certificate) { c.IsCA = true; c.KeyUsage |= x509.KeyUsageCertSign })
	critical := makeCert(t, p.ca.Root(), func(c *x509.Certificate) {
		c.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}}}
	})
	keyEncipherment := makeCert(t, p.ca.Root(), func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyEncipherment })
	cases := []struct {
		name string
		doc  *SignedPolicy
		want Reason
	}{
		{"a machine certificate", resign(t, d, machineKey, append([]*x509.Certificate{machine.Machine}, machine.Intermediates...)...), ReasonWrongEKU},
		{"the intermediate that issues leaves", resign(t, d, p.ca.Intermediate().Key, p.ca.Intermediate().Cert), ReasonWrongEKU},
		{"the root itself", resign(t, d, p.ca.Root().Key, p.ca.Root().Cert), ReasonWrongEKU},
		{"another CA's policy signer", resign(t, d, otherSigner.Key, otherSigner.Cert), ReasonUntrusted},
		{"a policy signer issued by the intermediate", resign(t, d, byIntermediate.Key, byIntermediate.Cert, p.ca.Intermediate().Cert), ReasonUntrusted},
		{"a policy signer issued by the intermediate, chain omitted", resign(t, d, byIntermediate.Key, byIntermediate.Cert), ReasonUntrusted},
		{"a self-signed policy signer", resign(t, d, selfSigned.Key, selfSigned.Cert), ReasonUntrusted},
		{"another trust domain's signer", resign(t, d, otherDomain.Key, otherDomain.Cert), ReasonWrongEKU},
		{"no SPIFFE ID", resign(t, d, noURI.Key, noURI.Cert), ReasonWrongEKU},
		{"client auth too", resign(t, d, extraEKU.Key, extraEKU.Cert), ReasonWrongEKU},
		{"any usage", resign(t, d, anyEKU.Key, anyEKU.Cert), ReasonWrongEKU},
		{"no extended key usage", resign(t, d, noEKU.Key, noEKU.Cert), ReasonWrongEKU},
		{"a CA with the usage", resign(t, d, caWithEKU.Key, caWithEKU.Cert), ReasonWrongEKU},
		{"no digital signature", resign(t, d, keyEncipherment.Key, keyEncipherment.Cert), ReasonWrongEKU},
		{"an unknown critical extension", resign(t, d, critical.Key, critical.Cert), ReasonUntrusted},
		{"our chain, another key", resign(t, d, otherSigner.Key, p.signer.Cert), ReasonBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(tc.doc, p.ca.Roots(), now, 0)
			wantReason(t, err, tc.want)
		})
	}
	// The right signer, checked against another trust domain's roots.
	otherRoots, err := certs.NewRoots("other.example", p.ca.Root().Cert)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify(d, otherRoots, now, 0)
	wantReason(t, err, ReasonWrongEKU)
	_, err = Verify(d, other.Roots(), now, 0)
	wantReason(t, err, ReasonUntrusted)
	_, err = Verify(d, nil, now, 0)
	wantReason(t, err, ReasonUntrusted)
}

func TestVerifyTimes(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	d := p.sign(t, 5, signedSrc, now)
	_, err := Verify(d, p.ca.Roots(), now.Add(PolicySignerLifetime+time.Hour), 0)
	wantReason(t, err, ReasonExpired)
	_, err = Verify(d, p.ca.Roots(), p.signer.Cert.NotBefore.Add(-time.Second), 0)
	wantReason(t, err, ReasonNotYetValid)
	future := p.sign(t, 6, signedSrc, now.Add(time.Hour))
	_, err = Verify(future, p.ca.Roots(), now, 0)
	wantReason(t, err, ReasonNotYetValid)
	before := p.sign(t, 6, signedSrc, p.signer.Cert.NotBefore.Add(-time.Hour))
	_, err = Verify(before, p.ca.Roots(), now, 0)
	wantReason(t, err, ReasonExpired)
	expired := makeCert(t, p.ca.Root(), func(c *x509.Certificate) { c.NotBefore, c.NotAfter = now.Add(-2*time.Hour), now.Add(-time.Hour) })
	_, err = Verify(resign(t, p.sign(t, 6, signedSrc, now.Add(-90*time.Minute)), expired.Key, expired.Cert), p.ca.Roots(), now, 0)
	wantReason(t, err, ReasonExpired)
}

func TestVerifyRefusesInvalidPolicy(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	d := &SignedPolicy{Version: 3, Policy: []byte(`{"rules": [{"from": ["group:nobody"]}]}`), SignedAt: now.UTC().Truncate(time.Second)}
	d.ValidUntil = d.SignedAt.Add(time.Hour)
	_, err := Verify(resign(t, d, p.signer.Key, p.signer.Cert), p.ca.Roots(), now, 0)
	wantReason(t, err, ReasonInvalidPolicy)
	if !strings.Contains(err.Error(), `group "group:nobody" is not defined`) {
		t.Fatal(err)
	}
}

func TestParseSignedPolicyTruncated(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	wire, err := p.sign(t, 5, signedSrc, now).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(wire) {
		_, err := ParseSignedPolicy(wire[:n])
		if ReasonOf(err) != ReasonTruncated {
			t.Fatalf("cut at %d of %d: %v", n, len(wire), err)
		}
	}
	_, err = ParseSignedPolicy(append(bytes.Clone(wire[:len(wire)/2]), "  \n"...))
	wantReason(t, err, ReasonTruncated)
}

func TestParseSignedPolicyMalformed(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	good := p.sign(t, 5, signedSrc, now)
	edit := func(f func(m map[string]any)) []byte {
		wire, _ := good.Marshal()
		var m map[string]any
		if err := json.Unmarshal(wire, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		out, _ := json.Marshal(m)
		return out
	}
	cases := map[string][]byte{
		"not JSON":          []byte("policy v5"),
		"an array":          []byte("[1, 2]"),
		"trailing data":     append(mustMarshal(t, good), "{}"...),
		"version 0":         edit(func(m map[string]any) { m["version"] = 0 }),
		"negative version":  edit(func(m map[string]any) { m["version"] = -1 }),
		"version as string": edit(func(m map[string]any) { m["version"] = "5" }),
		"no policy":         edit(func(m map[string]any) { delete(m, "policy") }),
		"policy not base64": edit(func(m map[string]any) { m["policy"] = "{not base64}" }),
		"no time":           edit(func(m map[string]any) { delete(m, "signed_at") }),
		"fractional time":   edit(func(m map[string]any) { m["signed_at"] = "2030-01-02T03:04:05.5Z" }),
		"no chain":          edit(func(m map[string]any) { m["chain"] = []any{} }),
		"too many certs":    edit(func(m map[string]any) { c := m["chain"].([]any)[0]; m["chain"] = []any{c, c, c, c, c} }),
		"no signature":      edit(func(m map[string]any) { delete(m, "signature") }),
		"huge":              append([]byte(`{"policy": "`), bytes.Repeat([]byte("A"), MaxDocumentSize)...),
	}
	for name, wire := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseSignedPolicy(wire)
			wantReason(t, err, ReasonMalformed)
		})
	}
	// A certificate that does not parse is found by Verify.
	bad := *good
	bad.Chain = [][]byte{[]byte("not DER")}
	_, err := Verify(&bad, p.ca.Roots(), now, 0)
	wantReason(t, err, ReasonMalformed)
	_, err = Verify(nil, p.ca.Roots(), now, 0)
	wantReason(t, err, ReasonMalformed)
	if ReasonOf(nil) != "" {
		t.Fatal("ReasonOf(nil)")
	}
}

func mustMarshal(t *testing.T, d *SignedPolicy) []byte {
	t.Helper()
	b, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSignRefuses(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	machine, machineKey := p.ca.IssueMachine(t, p.ca.NewProfile(t, "laptop"))
	failing := strings.Replace(signedSrc, `"tag:db:22", "expect": "drop"`, `"tag:db:22", "expect": "accept"`, 1)
	cases := []struct {
		name    string
		version uint64
		src     string
		key     crypto.Signer
		chain   []*x509.Certificate
		want    string
	}{
		{"version 0", 0, signedSrc, p.signer.Key, []*x509.Certificate{p.signer.Cert}, "versions start at 1"},
		{"unparseable", 1, `{"rules": [}`, p.signer.Key, []*x509.Certificate{p.signer.Cert}, "syntax error"},
		{"failing tests", 1, failing, p.signer.Key, []*x509.Certificate{p.signer.Cert}, "1 of the policy's tests fail:\nFAIL tests[1]"},
		{"no signer", 1, signedSrc, nil, nil, "a signer and its certificate are required"},
		{"another key", 1, signedSrc, machineKey, []*x509.Certificate{p.signer.Cert}, "the key is not the signing certificate's"},
		{"a machine certificate", 1, signedSrc, machineKey, []*x509.Certificate{machine.Machine}, "lacks the policy-signing extended key usage"},
		{"the intermediate", 1, signedSrc, p.ca.Intermediate().Key, []*x509.Certificate{p.ca.Intermediate().Cert}, "is a CA certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Sign(tc.version, []byte(tc.src), tc.key, tc.chain, now)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want …%s…", err, tc.want)
			}
		})
	}
}

func TestStarterSignsAndVerifies(t *testing.T) {
	p := newPKI(t)
	now := time.Now()
	d, err := Sign(StarterVersion, Starter(td), p.signer.Key, []*x509.Certificate{p.signer.Cert}, now)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := Verify(d, p.ca.Roots(), now, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(pol.Rules) != 1 {
		t.Fatalf("%d rules", len(pol.Rules))
	}
}
