package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tailscale/hujson"

	"github.com/certmesh/certmesh/certs"
)

// namedSelector is the selector of kind for the name parse reads from s
// (its zero value if parse fails, with parse's error).
func namedSelector[N ~string](kind SelectorKind, parse func(string) (N, error), s string) (Selector, error) {
	n, err := parse(s)
	return Selector{Kind: kind, Name: string(n)}, err
}

// parseSelector parses the syntax of a selector; it does not check that
// groups and tags are defined.
func parseSelector(s string) (Selector, error) {
	kind, rest, hasPrefix := strings.Cut(s, ":")
	if hasPrefix {
		var sel Selector
		var err error
		switch kind {
		case "user":
			sel, err = namedSelector(SelectUser, certs.ParseEmail, rest)
		case "group":
			sel, err = namedSelector(SelectGroup, certs.ParseGroup, rest)
		case "tag":
			var t certs.Tag
			if rest == "" || strings.HasPrefix(rest, "tag:") {
				err = fmt.Errorf("invalid tag %q", s)
			} else {
				t, err = certs.ParseTag(rest)
			}
			sel = Selector{Kind: SelectTag, Name: string(t)}
		case "device":
			sel, err = namedSelector(SelectDevice, certs.ParseDeviceID, rest)
		case "host":
			sel, err = namedSelector(SelectHost, certs.ParseHostname, rest)
		case "svc":
			sel, err = namedSelector(SelectService, parseServiceName, rest)
		default:
			hasPrefix = false
		}
		if hasPrefix {
			return sel, err
		}
	}
	if s == "*" {
		return Selector{Kind: SelectAny}, nil
	}
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return Selector{}, fmt.Errorf("bad CIDR %q: %v", s, trimNetipErr(err))
		}
		if pfx.Addr().Is4In6() {
			return Selector{}, fmt.Errorf("bad CIDR %q: write IPv4 ranges in IPv4 form", s)
		}
		if pfx != pfx.Masked() {
			return Selector{}, fmt.Errorf("bad CIDR %q: host bits are set (the range is %s)", s, pfx.Masked())
		}
		return Selector{Kind: SelectPrefix, Prefix: pfx}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" || a.Is4In6() {
			return Selector{}, fmt.Errorf("bad address %q: no zones, and IPv4 addresses in IPv4 form", s)
		}
		return Selector{Kind: SelectPrefix, Prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	} else if looksLikeAddr(s) {
		return Selector{}, fmt.Errorf("bad address %q: %v", s, trimNetipErr(err))
	}
	return Selector{}, fmt.Errorf("unknown selector %q: want *, user:EMAIL, group:NAME, tag:NAME, device:ID, host:NAME, svc:NAME, an IP address or a CIDR", s)
}

// parseServiceName checks the NAME of svc:NAME: a service name as machine
// certificates carry it (certs.Service: RFC 6335, lower case), without a
// port or protocol, which the certificate gives.
func parseServiceName(s string) (string, error) {
	if i := strings.IndexAny(s, ":/"); i >= 0 {
		return "", fmt.Errorf("invalid service %q: write svc:NAME alone; the port and protocol are the ones the device's certificate gives for NAME", "svc:"+s)
	}
	if err := (certs.Service{Name: s, Port: 1, Protocol: certs.ProtocolTCP}).Validate(); err != nil {
		return "", fmt.Errorf("invalid service %q: %v", "svc:"+s, err)
	}
	return s, nil
}

func looksLikeAddr(s string) bool {
	return s != "" && strings.Trim(s, "0123456789abcdefABCDEF.:%") == "" && strings.ContainsAny(s, ".:")
}

func trimNetipErr(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "): "); i >= 0 {
		return msg[i+3:]
	}
	return msg
}

// checkReference reports a group or tag that is not defined.
func (p *parser) checkReference(s Selector) {
	switch s.Kind {
	case SelectGroup:
		if !p.groups[certs.Group(s.Name)] {
			p.errorf(s.Pos.Offset, "group %q is not defined in \"groups\" (an identity-provider group is defined with no members: %q: [])", "group:"+s.Name, "group:"+s.Name)
		}
	case SelectTag:
		if !p.tags[certs.Tag(s.Name)] {
			p.errorf(s.Pos.Offset, "tag %q is not declared in \"tagOwners\"", "tag:"+s.Name)
		}
	}
}

// selectors parses an array of selectors, allowing the given kinds (all
// when allowed is nil), and checks their references.
func (p *parser) selectors(v *hujson.Value, what string, nonEmpty bool, allowed []SelectorKind, hint string) []Selector {
	ss, offs := p.strs(v, what, nonEmpty)
	var out []Selector
	for i, s := range ss {
		sel, err := parseSelector(s)
		if err != nil {
			p.errorf(offs[i], "%s: %v", what, err)
			continue
		}
		sel.Pos = p.pos(offs[i])
		if allowed != nil && !slices.Contains(allowed, sel.Kind) {
			p.errorf(offs[i], "%s: %q is not allowed here (%s)", what, s, hint)
			continue
		}
		out = append(out, sel)
	}
	return out
}
