package policy

import (
	"bytes"
	"crypto/x509"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/fuzzedit"
	"github.com/certmesh/certmesh/tstest/testca"
)

// FuzzParse: Parse never panics; its problems have positions inside the
// input, in order; a policy it accepts compiles, runs its tests and
// decides without panicking, and the compiled decision, to a node (with
// certified services) and through it as a router, agrees with the plain
// meaning.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		evalPolicy, testsPolicy, signedSrc, string(Starter("corp.example")), servicePolicy, serviceTestsPolicy,
		`{"rules": [{"from": ["*"], "to": ["svc:ssh"]}], "tests": [{"from": "host:a", "to": "10.0.0.1:22", "via": {"routes": ["10.0.0.0/8"]}, "expect": "drop"}]}`,
		`{}`, `{"rules": [,]}`, "{\"rules\": [\n{\"from\": [\"*\"], \"to\": [\"*\"], \"ports\": [\"tcp:1-2\"]}]}",
		`{"groups": {"group:a": ["group:b"], "group:b": ["group:a"]}}`,
		`{"tests": [{"from": {"user": "a@b.example"}, "to": "[fd7a::1]:22", "expect": "drop"}]}`,
		"// comment\n{/* c */\"rules\": [],}",
		"{\"rules\": [\"\xff\"]}", `[[[[[[[[[[[[[[[[[[[[[[[[`, `{"a": "\u0000"}`,
	} {
		f.Add([]byte(s))
	}
	src := certs.Identity{User: &certs.UserIdentity{Email: "dana@corp.example", Groups: []certs.Group{"eng"}}, Tags: []certs.Tag{"ci"},
		Hostname: "a", Attestation: certs.AttestationTPM, Addresses: []netip.Addr{netip.MustParseAddr("100.64.0.1")}}
	dst := certs.Identity{Tags: []certs.Tag{"db", "web"}, Hostname: "build", Addresses: []netip.Addr{netip.MustParseAddr("100.64.0.53")},
		Services: []certs.Service{{Name: "ssh", Port: 22, Protocol: certs.ProtocolTCP}, {Name: "dns", Port: 53, Protocol: certs.ProtocolUDP}},
		Routes:   []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("::/0")}}
	mayRoutePrefixes := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/28"), netip.MustParsePrefix("::/0")}
	routed := []netip.Addr{netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.0.1.5"), netip.MustParseAddr("2001:db8::1")}
	f.Fuzz(func(t *testing.T, data []byte) {
		pol, err := Parse(data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || len(pe.Problems) == 0 {
				t.Fatalf("error %T %v", err, err)
			}
			last := 0
			for _, p := range pe.Problems {
				if p.Pos.Offset < last || p.Pos.Offset > len(data) || p.Pos.Line < 1 || p.Pos.Column < 1 || p.Msg == "" {
					t.Fatalf("problem %+v in %d bytes", p, len(data))
				}
				last = p.Pos.Offset
			}
			return
		}
		if pol == nil || string(pol.Source) != string(data) {
			t.Fatal("accepted without the source")
		}
		c := pol.Compile()
		RunTests(pol)
		for _, p := range mayRoutePrefixes {
			if got := c.ForNode(src).MayRoute(dst, p); got != mayRouteReference(pol, src, dst, p) {
				t.Fatalf("MayRoute %s = %v, disagrees with the reference", p, got)
			}
		}
		for _, proto := range []Proto{ProtoTCP, ProtoUDP, ProtoICMP, 47} {
			for _, port := range []uint16{0, 1, 22, 53, 5432, 65535} {
				d := c.Decide(src, dst, proto, port)
				if want := reference(pol, src, dst, proto, port); d.Rule != want || d.Accept != (want >= 0) {
					t.Fatalf("Decide %v, reference rule %d", d, want)
				}
				for _, to := range routed {
					d := c.DecideRouted(src, dst, to, proto, port)
					if want := routedReference(pol, src, dst, to, proto, port); d.Rule != want || d.Accept != (want >= 0) {
						t.Fatalf("DecideRouted to %s: %v, reference rule %d", to, d, want)
					}
				}
			}
		}
	})
}

// FuzzParseSignedPolicy: a document from the wire never panics the parser
// or Verify, and Verify accepts nothing that is not the signed original.
//
// Every process (each fuzz worker runs this set-up again) has a CA and a
// policy signer of its own: the fuzzer edits this process's genuine
// document (no edits is the genuine document, which must verify).
func FuzzParseSignedPolicy(f *testing.F) {
	ca := testca.New(f, td)
	now := time.Now()
	signer, err := NewPolicySigningCertificate(ca.Root(), td, now)
	if err != nil {
		f.Fatal(err)
	}
	d, err := Sign(2, []byte(signedSrc), signer.Key, []*x509.Certificate{signer.Cert}, now)
	if err != nil {
		f.Fatal(err)
	}
	wire, err := d.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	doc, err := ParseSignedPolicy(wire)
	if err != nil {
		f.Fatalf("the genuine document does not parse: %v", err)
	}
	if _, err := Verify(doc, ca.Roots(), now, 1); err != nil {
		f.Fatalf("the genuine document is refused: %v", err)
	}
	version := bytes.Index(wire, []byte(`"version":2`))
	if version < 0 {
		f.Fatalf("no version 2 in %s", wire)
	}
	version += len(`"version":`)
	f.Add([]byte(nil))
	f.Add(fuzzedit.Xor(version, 1))                            // version 3: not what was signed
	f.Add(fuzzedit.Xor(len(wire)/3, 1))                        // inside the policy or chain
	f.Add(fuzzedit.Xor(len(wire)-4, 1))                        // inside the signature
	f.Add(append(fuzzedit.Xor(40, 4), fuzzedit.Xor(41, 4)...)) // two bytes
	f.Add(fuzzedit.Cut(len(wire) / 2))
	f.Add(fuzzedit.Cut(len(wire) - 1))
	f.Add(fuzzedit.Insert(1, ' ')) // still the genuine document
	f.Add(fuzzedit.Insert(len(wire)-1, ','))
	f.Fuzz(func(t *testing.T, edits []byte) {
		data := fuzzedit.Apply(wire, edits)
		doc, err := ParseSignedPolicy(data)
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		pol, err := Verify(doc, ca.Roots(), now, 1)
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if string(pol.Source) != signedSrc || doc.Version != d.Version || !doc.SignedAt.Equal(d.SignedAt) {
			t.Fatalf("accepted a document that is not the signed one: version %d", doc.Version)
		}
	})
}
