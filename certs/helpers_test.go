package certs_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// td is the trust domain of most tests.
const td certs.TrustDomain = "corp.example"

// verifyWire is what an agent does with a bundle received from the
// network: parse, then verify.
func verifyWire(w certs.WireBundle, roots *certs.Roots, now time.Time) (certs.Identity, error) {
	b, err := certs.ParseBundle(w)
	if err != nil {
		return certs.Identity{}, err
	}
	return certs.Verify(b, roots, nil, now)
}

// extension returns c's extension with this OID.
func extension(c *x509.Certificate, oid asn1.ObjectIdentifier) (pkix.Extension, bool) {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return e, true
		}
	}
	return pkix.Extension{}, false
}

// wire returns a fixed bundle.
func wire(w certs.WireBundle) func(*testing.T) certs.WireBundle {
	return func(*testing.T) certs.WireBundle { return w }
}
