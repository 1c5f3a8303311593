package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tailscale/hujson"

	"github.com/certmesh/certmesh/certs"
)

func (p *parser) tests(v *hujson.Value) []Test {
	elems, ok := p.array(v, `"tests"`)
	if !ok {
		return nil
	}
	var tests []Test
	for i := range elems {
		e := &elems[i]
		f := p.object(e, fmt.Sprintf("tests[%d]", i), []string{"name", "from", "to", "via", "port", "proto", "expect"})
		if f == nil {
			continue
		}
		t := Test{Name: fmt.Sprintf("tests[%d]", i), Proto: ProtoTCP, Pos: p.pos(e.StartOffset)}
		before := len(p.problems) + p.more
		if nv := f["name"]; nv != nil {
			if n, ok := p.name(nv, "a test's name"); ok {
				t.Name = n
			}
		}
		for _, fld := range []string{"from", "to", "expect"} {
			if f[fld] == nil {
				p.errorf(e.StartOffset, "tests[%d] has no %q", i, fld)
			}
		}
		if ev := f["expect"]; ev != nil {
			if s, ok := p.str(ev, `"expect"`); ok {
				switch s {
				case "accept":
					t.Accept = true
				case "drop":
				default:
					p.errorf(ev.StartOffset, "\"expect\" must be \"accept\" or \"drop\", not %q", s)
				}
			}
		}
		if pv := f["proto"]; pv != nil {
			if s, ok := p.str(pv, `"proto"`); ok {
				switch s {
				case "tcp":
					t.Proto = ProtoTCP
				case "udp":
					t.Proto = ProtoUDP
				case "icmp":
					t.Proto = ProtoICMP
				case "icmpv6":
					t.Proto = ProtoICMPv6
				default:
					p.errorf(pv.StartOffset, "unknown proto %q: want tcp, udp, icmp or icmpv6", s)
				}
			}
		}
		icmp := t.Proto == ProtoICMP || t.Proto == ProtoICMPv6
		hasPort := false
		if pv := f["port"]; pv != nil {
			lit, ok := pv.Value.(hujson.Literal)
			var err error
			if !ok || lit.Kind() != '0' {
				err = fmt.Errorf("must be a number, not %s", kindName(pv))
			} else {
				t.Port, err = parsePortNumber(string(lit))
			}
			switch {
			case err != nil:
				p.errorf(pv.StartOffset, "\"port\": %v", err)
			case icmp:
				p.errorf(pv.StartOffset, "%s has no port", t.Proto)
			}
			hasPort = true
		}
		if fv := f["from"]; fv != nil {
			t.From, t.FromText, _ = p.endpoint(fv, `"from"`, false)
			if len(t.From.Services) > 0 && fv.Value.Kind() != '{' {
				p.errorf(fv.StartOffset, "\"from\": svc:NAME names a destination, not a source (an object \"from\" may list \"services\")")
			}
		}
		if tv := f["to"]; tv != nil {
			needPort := !icmp && !hasPort
			var port uint16
			t.To, t.ToText, port = p.endpoint(tv, `"to"`, needPort)
			if needPort {
				t.Port = port
			}
			if !icmp && !hasPort && port == 0 && tv.Value.Kind() == '{' {
				p.errorf(tv.StartOffset, "a test to %s needs a \"port\"", t.Proto)
			}
			if tv.Value.Kind() != '{' && len(t.To.Services) == 1 {
				p.serviceTo(tv, &t)
			}
		}
		if vv := f["via"]; vv != nil && f["to"] != nil {
			p.via(vv, f["to"], &t)
		}
		if len(p.problems)+p.more == before {
			tests = append(tests, t)
		}
	}
	return tests
}

// endpoint parses a test's "from" or "to": a selector string naming one
// identity or an object of traits. withPort: the string ends in ":PORT"
// (an IPv6 address is then in brackets), returned as port.
func (p *parser) endpoint(v *hujson.Value, what string, withPort bool) (id certs.Identity, text string, port uint16) {
	id.Attestation = certs.AttestationToken
	if v.Value.Kind() == '{' {
		return p.endpointObject(v, what, id)
	}
	s, ok := p.str(v, what)
	if !ok {
		return id, "", 0
	}
	text = s
	selText := s
	if withPort {
		i := strings.LastIndexByte(s, ':')
		if a, err := netip.ParseAddr(s); err == nil && a.Is6() {
			p.errorf(v.StartOffset, "%s %q is an IPv6 address without a port: write an IPv6 address in brackets, [ADDRESS]:PORT", what, s)
			return id, text, 0
		}
		if _, err := netip.ParseAddr(s); err == nil || i < 0 || strings.Trim(s[i+1:], "0123456789") != "" {
			p.errorf(v.StartOffset, "%s %q has no port: write %s:PORT (an IPv6 address as [ADDRESS]:PORT), or give \"proto\": \"icmp\"", what, s, s)
			return id, text, 0
		}
		n, err := parsePortNumber(s[i+1:])
		if err != nil {
			p.errorf(v.StartOffset, "%s %q: %v", what, s, err)
			return id, text, 0
		}
		port = n
		selText = s[:i]
		if strings.HasPrefix(selText, "[") && strings.HasSuffix(selText, "]") {
			selText = selText[1 : len(selText)-1]
			if a, err := netip.ParseAddr(selText); err != nil || !a.Is6() {
				p.errorf(v.StartOffset, "%s %q: brackets are for an IPv6 address", what, s)
				return id, text, 0
			}
		} else if a, err := netip.ParseAddr(selText); err == nil && a.Is6() {
			p.errorf(v.StartOffset, "%s %q: write an IPv6 address in brackets, [%s]:%d", what, s, selText, n)
			return id, text, 0
		}
	}
	sel, err := parseSelector(selText)
	if err != nil {
		p.errorf(v.StartOffset, "%s: %v", what, err)
		return id, text, port
	}
	sel.Pos = p.pos(v.StartOffset)
	p.checkReference(sel)
	switch sel.Kind {
	case SelectAny:
		p.errorf(v.StartOffset, "%s must name one identity, not *", what)
	case SelectUser:
		id.User = &certs.UserIdentity{Email: certs.Email(sel.Name)}
	case SelectGroup:
		id.User = &certs.UserIdentity{Groups: []certs.Group{certs.Group(sel.Name)}}
	case SelectTag:
		id.Tags = []certs.Tag{certs.Tag(sel.Name)}
	case SelectDevice:
		id.DeviceID = certs.DeviceID(sel.Name)
	case SelectHost:
		id.Hostname = certs.Hostname(sel.Name)
	case SelectPrefix:
		if !sel.Prefix.IsSingleIP() {
			p.errorf(v.StartOffset, "%s must name one address, not the range %s", what, sel.Prefix)
		}
		id.Addresses = []netip.Addr{sel.Prefix.Addr()}
	case SelectService:
		// The port and protocol are the test's (see serviceTo).
		id.Services = []certs.Service{{Name: sel.Name, Port: port, Protocol: certs.ProtocolTCP}}
	}
	return id, text, port
}

func (p *parser) endpointObject(v *hujson.Value, what string, id certs.Identity) (certs.Identity, string, uint16) {
	f := p.object(v, what, []string{"user", "groups", "tags", "device", "host", "addresses", "services", "routes", "attestation"})
	if len(f) == 0 {
		if f != nil {
			p.errorf(v.StartOffset, "%s describes no identity", what)
		}
		return id, "", 0
	}
	if uv := f["user"]; uv != nil {
		if s, ok := p.str(uv, "user"); ok {
			e, err := certs.ParseEmail(s)
			if err != nil {
				p.errorf(uv.StartOffset, "%v", err)
			}
			id.User = &certs.UserIdentity{Email: e}
		}
	}
	if gv := f["groups"]; gv != nil {
		ss, offs := p.strs(gv, "groups", false)
		if id.User == nil {
			id.User = &certs.UserIdentity{}
		}
		for i, s := range ss {
			g, err := certs.ParseGroup(s)
			if err != nil {
				p.errorf(offs[i], "%v", err)
				continue
			}
			id.User.Groups = append(id.User.Groups, g)
		}
	}
	if tv := f["tags"]; tv != nil {
		ss, offs := p.strs(tv, "tags", false)
		for i, s := range ss {
			sel, err := parseSelector(s)
			if err != nil || sel.Kind != SelectTag {
				p.errorf(offs[i], "tags: %q is not a tag: want tag:NAME", s)
				continue
			}
			sel.Pos = p.pos(offs[i])
			p.checkReference(sel)
			id.Tags = append(id.Tags, certs.Tag(sel.Name))
		}
	}
	parseField(p, f["device"], "device", certs.ParseDeviceID, &id.DeviceID)
	parseField(p, f["host"], "host", certs.ParseHostname, &id.Hostname)
	if av := f["addresses"]; av != nil {
		ss, offs := p.strs(av, "addresses", false)
		for i, s := range ss {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" || a.Is4In6() {
				p.errorf(offs[i], "bad address %q", s)
				continue
			}
			id.Addresses = append(id.Addresses, a)
		}
	}
	p.servicesAndRoutes(f, &id)
	if av := f["attestation"]; av != nil {
		if s, ok := p.str(av, "attestation"); ok {
			if l := certs.AttestationLevel(s); l.Valid() {
				id.Attestation = l
			} else {
				p.errorf(av.StartOffset, "unknown attestation level %q: want %q or %q", s, certs.AttestationTPM, certs.AttestationToken)
			}
		}
	}
	return id, describe(id), 0
}

// parseField sets *dst to what parse reads from the string value v of the
// field what, if present; a parse error is reported at the value (and *dst
// set to what parse returned with it).
func parseField[T any](p *parser, v *hujson.Value, what string, parse func(string) (T, error), dst *T) {
	if v == nil {
		return
	}
	if s, ok := p.str(v, what); ok {
		t, err := parse(s)
		if err != nil {
			p.errorf(v.StartOffset, "%v", err)
		}
		*dst = t
	}
}

// describe writes a synthetic identity in compact form.
func describe(id certs.Identity) string {
	var parts []string
	if u := id.User; u != nil {
		if u.Email != "" {
			parts = append(parts, "user:"+string(u.Email))
		}
		for _, g := range u.Groups {
			parts = append(parts, "idp-group:"+strconv.Quote(string(g)))
		}
	}
	for _, t := range id.Tags {
		parts = append(parts, "tag:"+string(t))
	}
	if id.DeviceID != "" {
		parts = append(parts, "device:"+string(id.DeviceID))
	}
	if id.Hostname != "" {
		parts = append(parts, "host:"+string(id.Hostname))
	}
	for _, a := range id.Addresses {
		parts = append(parts, a.String())
	}
	for _, s := range id.Services {
		parts = append(parts, "svc:"+s.String())
	}
	for _, r := range id.Routes {
		parts = append(parts, "routes:"+r.String())
	}
	if id.Attestation != certs.AttestationToken {
		parts = append(parts, "attestation:"+string(id.Attestation))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// TestResult is the outcome of one of a policy's tests.
type TestResult struct {
	Index int    // in the policy's tests
	Name  string // the test's name, or "tests[i]"
	Pos   Position
	// From, To, Via, Proto and Port are the case tested, as the test
	// wrote it (Via is empty unless the test is of routed traffic).
	From, To, Via string
	Proto         Proto
	Port          uint16
	// Want is the expected decision: true for accept, false for drop.
	Want     bool
	Decision Decision
	Passed   bool
}

// String is one line: the verdict, the test, what was decided and by
// which rule.
func (r TestResult) String() string {
	verdict := "ok  "
	if !r.Passed {
		verdict = "FAIL"
	}
	to := r.To
	if r.Proto != ProtoICMP && r.Proto != ProtoICMPv6 && strings.HasPrefix(to, "{") {
		to += ":" + strconv.Itoa(int(r.Port))
	}
	if r.Via != "" {
		to += " via " + r.Via
	}
	s := fmt.Sprintf("%s %s (line %d): %s -> %s %s: %s", verdict, r.Name, r.Pos.Line, r.From, to, r.Proto, r.Decision)
	if !r.Passed {
		s += fmt.Sprintf(", want %s", acceptWord(r.Want))
	}
	return s
}

func acceptWord(accept bool) string {
	if accept {
		return "accept"
	}
	return "drop"
}

// RunTests runs the policy's tests against its compiled form, in order.
// Each test's "from" and "to" are synthetic identities (see the package
// documentation); the test passes when Decide's verdict (DecideRouted's,
// through the router "via", for a test with one) is the expected one.
func RunTests(p *Policy) []TestResult {
	c := p.Compile()
	out := make([]TestResult, len(p.Tests))
	for i, t := range p.Tests {
		var d Decision
		if t.Via != nil {
			d = c.DecideRouted(t.From, *t.Via, t.To.Addresses[0], t.Proto, t.Port)
		} else {
			d = c.Decide(t.From, t.To, t.Proto, t.Port)
		}
		out[i] = TestResult{
			Index: i, Name: t.Name, Pos: t.Pos,
			From: t.FromText, To: t.ToText, Via: t.ViaText, Proto: t.Proto, Port: t.Port,
			Want: t.Accept, Decision: d, Passed: d.Accept == t.Accept,
		}
	}
	return out
}

// Failed returns the results that did not pass.
func Failed(results []TestResult) []TestResult {
	var out []TestResult
	for _, r := range results {
		if !r.Passed {
			out = append(out, r)
		}
	}
	return out
}
