package agent

import (
	"net/netip"
	"testing"
)

func TestEndpointPolicy(t *testing.T) {
	overlay := []netip.Prefix{netip.MustParsePrefix("100.80.0.0/16"), netip.MustParsePrefix("fd7a:115c:a1e0::/48")}
	strict := newEndpointPolicy(overlay, []netip.Addr{netip.MustParseAddr("192.0.2.10")})
	local := newEndpointPolicy(overlay, []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	for _, c := range []struct {
		ep            string
		strict, local bool // allowed by each
	}{
		{"198.51.100.7:51820", true, true},
		{"[2001:db8::7]:51820", true, true},
		{"10.1.2.3:51820", true, true},
		{"127.0.0.1:51820", false, true},
		{"127.9.9.9:51820", false, true},
		{"[::1]:51820", false, true},
		{"[::ffff:127.0.0.1]:51820", false, true},
		{"0.0.0.0:51820", false, false},
		{"[::]:51820", false, false},
		{"224.0.0.251:5353", false, false},
		{"[ff02::1]:51820", false, false},
		{"255.255.255.255:51820", false, false},
		{"169.254.169.254:80", false, false},
		{"[fe80::1]:51820", false, false},
		{"100.80.0.9:51820", false, false},
		{"[::ffff:100.80.0.9]:51820", false, false},
		{"[fd7a:115c:a1e0::9]:51820", false, false},
		{"198.51.100.7:0", false, false},
	} {
		ep := netip.MustParseAddrPort(c.ep)
		if got := strict.check(ep) == nil; got != c.strict {
			t.Errorf("agent not on loopback: %s allowed = %v, want %v (%v)", c.ep, got, c.strict, strict.check(ep))
		}
		if got := local.check(ep) == nil; got != c.local {
			t.Errorf("agent on loopback: %s allowed = %v, want %v (%v)", c.ep, got, c.local, local.check(ep))
		}
	}
	if (endpointPolicy{}).check(netip.AddrPort{}) == nil {
		t.Error("the zero endpoint is allowed")
	}
}
