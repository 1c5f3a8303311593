package policy

import (
	"net/netip"

	"github.com/tailscale/hujson"

	"github.com/certmesh/certmesh/certs"
)

// servicesAndRoutes reads the "services" (certs.ParseService form:
// "ssh:22", "dns:53/udp") and "routes" (canonical prefixes) of a test's
// identity object.
func (p *parser) servicesAndRoutes(f map[string]*hujson.Value, id *certs.Identity) {
	if sv := f["services"]; sv != nil {
		ss, offs := p.strs(sv, "services", false)
		for i, s := range ss {
			svc, err := certs.ParseService(s)
			if err != nil {
				p.errorf(offs[i], "services: %v", err)
				continue
			}
			id.Services = append(id.Services, svc)
		}
		if err := certs.CheckServices(id.Services); err != nil {
			p.errorf(sv.StartOffset, "services: %v", err)
		}
	}
	if rv := f["routes"]; rv != nil {
		ss, offs := p.strs(rv, "routes", false)
		for i, s := range ss {
			r, err := netip.ParsePrefix(s)
			if err != nil || r != r.Masked() || r.Addr().Is4In6() || r.Addr().Zone() != "" {
				p.errorf(offs[i], "routes: %q is not a canonical CIDR prefix (like 10.0.0.0/24 or 2001:db8::/32)", s)
				continue
			}
			id.Routes = append(id.Routes, r)
		}
	}
}

// serviceTo completes a test to "svc:NAME:PORT": a device certified to
// offer NAME at PORT over the test's protocol, which must be TCP or UDP.
func (p *parser) serviceTo(tv *hujson.Value, t *Test) {
	switch t.Proto {
	case ProtoTCP:
	case ProtoUDP:
		t.To.Services[0].Protocol = certs.ProtocolUDP
	default:
		p.errorf(tv.StartOffset, "\"to\": a test to svc:NAME:PORT is over tcp or udp, not %s (an object \"to\" may list \"services\")", t.Proto)
	}
}

// via reads a routed test's "via", the router, and checks its "to", the
// destination: one address, nothing else. A router whose "routes" the test
// does not give routes that address (a /32 or /128).
func (p *parser) via(vv, tv *hujson.Value, t *Test) {
	router, text, _ := p.endpoint(vv, `"via"`, false)
	if len(router.Services) > 0 && vv.Value.Kind() != '{' {
		p.errorf(vv.StartOffset, "\"via\": svc:NAME is not a router (an object \"via\" may list \"services\")")
	}
	dst := t.To
	dst.Attestation = ""
	if len(dst.Addresses) != 1 || dst.User != nil || len(dst.Tags) > 0 || dst.DeviceID != "" || dst.Hostname != "" ||
		len(dst.Services) > 0 || len(dst.Routes) > 0 || (tv.Value.Kind() == '{' && t.To.Attestation != certs.AttestationToken) {
		p.errorf(tv.StartOffset, "with \"via\", \"to\" is the routed destination: one address (\"10.0.0.5:22\", \"[2001:db8::5]:22\"), not a device")
		return
	}
	if len(router.Routes) == 0 {
		a := dst.Addresses[0]
		router.Routes = []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}
	}
	t.Via, t.ViaText = &router, text
}
