package certs_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/certmesh/certmesh/certs"
)

// certWithExtension builds, without crypto/x509, a minimal self-signed
// certificate carrying one extension with the OID given in dotted form
// (x509.OID can encode any component; asn1.ObjectIdentifier cannot).
func certWithExtension(t *testing.T, dotted string) []byte {
	t.Helper()
	oid, err := x509.ParseOID(dotted)
	if err != nil {
		t.Fatal(err)
	}
	oidBody, err := oid.MarshalBinary() // the OID's DER contents
	if err != nil {
		t.Fatal(err)
	}
	key, err := certs.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	name, err := asn1.Marshal(pkix.Name{CommonName: "arc test"}.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	ecdsaWithSHA256 := func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2})
		})
	}
	now := time.Now().UTC().Truncate(time.Second)

	var tbs cryptobyte.Builder
	tbs.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddASN1Int64(2) }) // v3
		b.AddASN1Int64(1)                                                                                           // serial
		ecdsaWithSHA256(b)
		b.AddBytes(name) // issuer
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1UTCTime(now.Add(-time.Hour))
			b.AddASN1UTCTime(now.Add(time.Hour))
		})
		b.AddBytes(name) // subject
		b.AddBytes(spki)
		b.AddASN1(cbasn1.Tag(3).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.OBJECT_IDENTIFIER, func(b *cryptobyte.Builder) { b.AddBytes(oidBody) })
					b.AddASN1OctetString([]byte{0x04, 0x01, 0x2a}) // extnValue: OCTET STRING { 42 }
				})
			})
		})
	})
	tbsDER := tbs.BytesOrPanic()
	digest := sha256.Sum256(tbsDER)
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	var cert cryptobyte.Builder
	cert.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbsDER)
		ecdsaWithSHA256(b)
		b.AddASN1BitString(sig)
	})
	return cert.BytesOrPanic()
}

// The design puts certmesh's extensions under 2.25.<UUID>, a 128-bit arc
// component. Go cannot parse a certificate carrying such an extension, so
// certs uses Arc, the top 31 bits of that UUID, instead.
func TestMandatedArcIsUnparsableByGo(t *testing.T) {
	uuid, ok := new(big.Int).SetString(strings.TrimPrefix(certs.MandatedArc, "2.25."), 10)
	if !ok {
		t.Fatalf("MandatedArc %q is not 2.25.<integer>", certs.MandatedArc)
	}
	top31 := new(big.Int).Rsh(uuid, 128-31)
	top32 := new(big.Int).Rsh(uuid, 128-32)
	if uuid.BitLen() != 128 || !top31.IsInt64() || int64(certs.Arc[2]) != top31.Int64() || len(certs.Arc) != 3 || certs.Arc[0] != 2 || certs.Arc[1] != 25 {
		t.Fatalf("Arc %v is not 2.25.<top 31 bits of %s> = 2.25.%s", certs.Arc, certs.MandatedArc, top31)
	}

	tests := []struct {
		name, oid string
		parses    bool
	}{
		{"certmesh WireGuard key OID", certs.OIDWireGuardKey.String(), true},
		{"largest component Go reads (2^31-1)", "2.25.2147483647.1", true},
		{"top 32 bits of the UUID", "2.25." + top32.String() + ".1", false},
		{"the mandated arc", certs.MandatedArc + ".1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			der := certWithExtension(t, tt.oid)
			c, err := x509.ParseCertificate(der)
			if !tt.parses {
				if err == nil || !strings.Contains(err.Error(), "malformed extension OID") {
					t.Fatalf("ParseCertificate = %v, want the malformed extension OID error", err)
				}
				// The OID itself cannot be read into an asn1.ObjectIdentifier.
				oid, _ := x509.ParseOID(tt.oid)
				body, _ := oid.MarshalBinary()
				var b cryptobyte.Builder
				b.AddASN1(cbasn1.OBJECT_IDENTIFIER, func(b *cryptobyte.Builder) { b.AddBytes(body) })
				var out asn1.ObjectIdentifier
				if s := cryptobyte.String(b.BytesOrPanic()); s.ReadASN1ObjectIdentifier(&out) {
					t.Fatalf("ReadASN1ObjectIdentifier read %v", out)
				}
				return
			}
			// The control: the same builder makes a good certificate.
			if err != nil {
				t.Fatalf("ParseCertificate: %v", err)
			}
			if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
				t.Fatalf("built certificate has a bad signature: %v", err)
			}
			if len(c.Extensions) != 1 || c.Extensions[0].Id.String() != tt.oid {
				t.Fatalf("extensions %v, want one with OID %s", c.Extensions, tt.oid)
			}
		})
	}
}
