package certs

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/netip"
	"testing"
)

// The fuzz targets of the route and service extension parsers: no input
// makes them panic, and what they accept satisfies the checks the CA signs
// under (so re-encoding and re-parsing it gives the same thing).

var fuzzOverlays = []netip.Prefix{netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("fd7a:c3e7:5e00::/48")}

func FuzzParseRoutes(f *testing.F) {
	for _, seed := range [][]string{{"10.0.0.0/24"}, {"0.0.0.0/0", "::/0"}, {"100.64.0.0/24"}, {"10.0.0.1/24"}, {}} {
		der, _ := marshalUTF8Seq(seed)
		f.Add(der)
	}
	f.Add([]byte{0x30, 0x80})
	f.Fuzz(func(t *testing.T, der []byte) {
		c := &x509.Certificate{Extensions: []pkix.Extension{{Id: OIDRoutes, Value: der}}}
		routes, err := parseRoutesExt(c, fuzzOverlays)
		if err != nil {
			return
		}
		if err := CheckRoutes(routes, fuzzOverlays); err != nil {
			t.Fatalf("accepted routes %v fail CheckRoutes: %v", routes, err)
		}
		again, err := marshalUTF8Seq(stringsOf(routes))
		if err != nil || string(again) != string(der) {
			t.Fatalf("routes %v re-encode to %x, not the input %x (%v)", routes, again, der, err)
		}
	})
}

func FuzzParseServices(f *testing.F) {
	for _, seed := range [][]Service{{{"ssh", 22, ProtocolTCP}}, {{"web", 443, ProtocolTCP}, {"dns", 53, ProtocolUDP}}, {{"SSH", 0, "x"}}} {
		der, _ := marshalServices(seed)
		f.Add(der)
	}
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		svcs, err := unmarshalServices(der)
		if err != nil {
			return
		}
		if err := CheckServices(svcs); err != nil {
			t.Fatalf("accepted services %v fail CheckServices: %v", svcs, err)
		}
		again, err := marshalServices(svcs)
		if err != nil || string(again) != string(der) {
			t.Fatalf("services %v re-encode to %x, not the input %x (%v)", svcs, again, der, err)
		}
	})
}
