package certs_test

import (
	"crypto/x509/pkix"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/testca"
)

// servicesDER builds extension .7 without certs: each element is name,
// port, protocol.
func servicesDER(elems ...[3]any) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, e := range elems {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(e[0].(string))) })
				b.AddASN1Int64(int64(e[1].(int)))
				b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(e[2].(string))) })
			})
		}
	})
	return b.BytesOrPanic()
}

func TestRoutesAndServicesRoundTrip(t *testing.T) {
	ca := testca.New(t, td)
	p := ca.NewProfile(t, "router")
	p.Routes = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"), netip.MustParsePrefix("2001:db8::/32")}
	p.Services = []certs.Service{{Name: "ssh", Port: 22, Protocol: certs.ProtocolTCP}, {Name: "web", Port: 443, Protocol: certs.ProtocolTCP}, {Name: "dns", Port: 53, Protocol: certs.ProtocolUDP}}
	b, _ := ca.IssueMachine(t, p)
	id, err := certs.Verify(b, ca.Roots(), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(id.Routes, p.Routes) || !slices.Equal(id.Services, p.Services) {
		t.Fatalf("verified routes %v services %v, want %v %v", id.Routes, id.Services, p.Routes, p.Services)
	}
	if !id.ExitNode() || !id.HasRoute(netip.MustParsePrefix("10.0.0.0/24")) || id.HasRoute(netip.MustParsePrefix("10.0.0.0/25")) {
		t.Fatalf("ExitNode/HasRoute wrong for %v", id.Routes)
	}
	plain, _ := ca.IssueMachine(t, ca.NewProfile(t, "plain"))
	if id, err := certs.Verify(plain, ca.Roots(), nil, time.Now()); err != nil || id.Routes != nil || id.Services != nil || id.ExitNode() {
		t.Fatalf("certificate without .4/.7: routes %v services %v err %v", id.Routes, id.Services, err)
	}
	for _, e := range b.Machine.Extensions {
		if name, v := certs.DescribeExtension(e); name == "routes" && v != "10.0.0.0/24, 0.0.0.0/0, ::/0, 2001:db8::/32" || name == "services" && v != "ssh:22/tcp, web:443/tcp, dns:53/udp" {
			t.Errorf("DescribeExtension %s = %q", name, v)
		}
	}
}

// TestVerifyRefusesBadRoutes: a machine certificate whose routes extension
// is anything but a short list of distinct canonical prefixes outside the
// overlay is refused as a whole, with reason routes, even though the
// (stolen or buggy) issuing CA signed it.
func TestVerifyRefusesBadRoutes(t *testing.T) {
	ca := testca.New(t, td) // overlays 100.64.0.0/10 and fd7a:c3e7:5e00::/48
	many := make([]string, certs.MaxRoutes+1)
	for i := range many {
		many[i] = fmt.Sprintf("10.%d.0.0/16", i)
	}
	for _, tc := range []struct {
		name string
		der  []byte
	}{
		{"inside the IPv4 overlay", utf8Seq("100.64.1.0/24")},
		{"covering the IPv4 overlay", utf8Seq("100.0.0.0/8")},
		{"inside the IPv6 overlay", utf8Seq("fd7a:c3e7:5e00:1::/64")},
		{"covering the IPv6 overlay", utf8Seq("fd00::/8")},
		{"not masked", utf8Seq("10.0.0.1/24")},
		{"no prefix length", utf8Seq("10.0.0.1")},
		{"IPv4-mapped", utf8Seq("::ffff:10.0.0.0/120")},
		{"not canonical text", utf8Seq("2001:DB8::/32")},
		{"twice", utf8Seq("10.0.0.0/24", "10.0.0.0/24")},
		{"too many", utf8Seq(many...)},
		{"empty", utf8Seq()},
		{"not a SEQUENCE OF UTF8String", []byte{0x04, 0x01, 0x00}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, _ := ca.IssueMachineWire(t, ca.NewProfile(t, "router"), testca.WithExtension(pkix.Extension{Id: certs.OIDRoutes, Value: tc.der}))
			b, err := certs.ParseBundle(w)
			if err != nil {
				t.Fatal(err)
			}
			id, err := certs.Verify(b, ca.Roots(), nil, time.Now())
			if certs.ReasonOf(err) != certs.ReasonRoutes || id.Routes != nil {
				t.Fatalf("Verify = %v, %v; want reason %q and no identity", id.Routes, err, certs.ReasonRoutes)
			}
		})
	}
}

// TestVerifyRefusesBadServices: likewise for the services extension.
func TestVerifyRefusesBadServices(t *testing.T) {
	ca := testca.New(t, td)
	many := make([][3]any, certs.MaxServices+1)
	for i := range many {
		many[i] = [3]any{fmt.Sprintf("s%d", i), 1000 + i, "tcp"}
	}
	for _, tc := range []struct {
		name string
		der  []byte
	}{
		{"upper case", servicesDER([3]any{"SSH", 22, "tcp"})},
		{"underscore", servicesDER([3]any{"_ssh", 22, "tcp"})},
		{"digits only", servicesDER([3]any{"22", 22, "tcp"})},
		{"too long", servicesDER([3]any{"abcdefghijklmnop", 22, "tcp"})},
		{"dot", servicesDER([3]any{"a.b", 22, "tcp"})},
		{"port 0", servicesDER([3]any{"ssh", 0, "tcp"})},
		{"port 65536", servicesDER([3]any{"ssh", 65536, "tcp"})},
		{"protocol sctp", servicesDER([3]any{"ssh", 22, "sctp"})},
		{"twice", servicesDER([3]any{"ssh", 22, "tcp"}, [3]any{"ssh", 2222, "tcp"})},
		{"too many", servicesDER(many...)},
		{"empty", servicesDER()},
		{"strings instead of structures", utf8Seq("ssh:22")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, _ := ca.IssueMachineWire(t, ca.NewProfile(t, "server"), testca.WithExtension(pkix.Extension{Id: certs.OIDServices, Value: tc.der}))
			b, err := certs.ParseBundle(w)
			if err != nil {
				t.Fatal(err)
			}
			id, err := certs.Verify(b, ca.Roots(), nil, time.Now())
			if certs.ReasonOf(err) != certs.ReasonServices || id.Services != nil {
				t.Fatalf("Verify = %v, %v; want reason %q and no identity", id.Services, err, certs.ReasonServices)
			}
		})
	}
}

func TestMachineProfileRefusesBadRoutesAndServices(t *testing.T) {
	ca := testca.New(t, td)
	for name, edit := range map[string]func(*certs.MachineProfile){
		"route twice": func(p *certs.MachineProfile) {
			p.Routes = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}
		},
		"route masked":  func(p *certs.MachineProfile) { p.Routes = []netip.Prefix{netip.MustParsePrefix("10.0.0.1/8")} },
		"service name":  func(p *certs.MachineProfile) { p.Services = []certs.Service{{Name: "-x", Port: 1, Protocol: "tcp"}} },
		"service port0": func(p *certs.MachineProfile) { p.Services = []certs.Service{{Name: "x", Protocol: "tcp"}} },
	} {
		p := ca.NewProfile(t, "h")
		edit(&p)
		if err := p.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %v %v", name, p.Routes, p.Services)
		}
	}
}

func TestParseRouteAndService(t *testing.T) {
	for _, s := range []string{"10.0.0.0/24", "0.0.0.0/0", "::/0", "2001:db8::/32"} {
		if p, err := certs.ParseRoute(s); err != nil || p.String() != s {
			t.Errorf("ParseRoute(%q) = %v, %v", s, p, err)
		}
	}
	for _, s := range []string{"10.0.0.1/24", "10.0.0.0", "::ffff:10.0.0.0/104", "2001:DB8::/32", "fe80::/10%eth0"} {
		if _, err := certs.ParseRoute(s); err == nil {
			t.Errorf("ParseRoute(%q) accepted", s)
		}
	}
	for in, want := range map[string]string{"ssh:22": "ssh:22/tcp", "web:443/tcp": "web:443/tcp", "dns:53/udp": "dns:53/udp"} {
		if s, err := certs.ParseService(in); err != nil || s.String() != want {
			t.Errorf("ParseService(%q) = %v, %v", in, s, err)
		}
	}
	for _, in := range []string{"ssh", "ssh:0", "ssh:022", "ssh:65536", "ssh:22/sctp", "SSH:22", ":22", "a--b:1"} {
		if _, err := certs.ParseService(in); err == nil {
			t.Errorf("ParseService(%q) accepted", in)
		}
	}
}
