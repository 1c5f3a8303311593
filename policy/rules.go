package policy

import (
	"fmt"
	"slices"

	"github.com/tailscale/hujson"

	"github.com/certmesh/certmesh/certs"
)

func (p *parser) rules(v *hujson.Value) []Rule {
	elems, ok := p.array(v, `"rules"`)
	if !ok {
		return nil
	}
	var rules []Rule
	names := map[string]bool{}
	for i := range elems {
		e := &elems[i]
		f := p.object(e, fmt.Sprintf("rules[%d]", i), []string{"name", "from", "to", "ports", "when"})
		if f == nil {
			continue
		}
		r := Rule{Name: fmt.Sprintf("rules[%d]", i), Pos: p.pos(e.StartOffset)}
		nameOff := e.StartOffset
		if nv := f["name"]; nv != nil {
			if n, ok := p.name(nv, "a rule's name"); ok {
				r.Name, nameOff = n, nv.StartOffset
			}
		}
		if names[r.Name] {
			p.errorf(nameOff, "two rules are named %q", r.Name)
		}
		names[r.Name] = true
		for _, fld := range []string{"from", "to"} {
			if f[fld] == nil {
				p.errorf(e.StartOffset, "rules[%d] has no %q", i, fld)
			}
		}
		if fv := f["from"]; fv != nil {
			r.From = p.selectors(fv, `"from"`, true, sourceKinds,
				"svc:NAME is a destination: it selects the devices certified to offer NAME, so it belongs in \"to\"")
		}
		if tv := f["to"]; tv != nil {
			r.To = p.selectors(tv, `"to"`, true, nil, "")
		}
		for _, s := range slices.Concat(r.From, r.To) {
			p.checkReference(s)
		}
		p.checkPortsNeeded(e, f, i, r.To)
		if pv := f["ports"]; pv != nil {
			ss, offs := p.strs(pv, `"ports"`, true)
			for j, s := range ss {
				ps, err := parsePort(s)
				if err != nil {
					p.errorf(offs[j], "%v", err)
					continue
				}
				ps.Pos = p.pos(offs[j])
				r.Ports = append(r.Ports, ps)
			}
		}
		if wv := f["when"]; wv != nil {
			wf := p.object(wv, `"when"`, []string{"attestation"})
			if av := wf["attestation"]; av != nil {
				if s, ok := p.str(av, "attestation"); ok {
					switch l := certs.AttestationLevel(s); l {
					case certs.AttestationTPM, certs.AttestationToken:
						r.When.Attestation = l
					default:
						p.errorf(av.StartOffset, "unknown attestation level %q: want %q or %q", s, certs.AttestationTPM, certs.AttestationToken)
					}
				}
			}
		}
		rules = append(rules, r)
	}
	return rules
}

// sourceKinds are the selectors a rule's "from" may use: all but services.
var sourceKinds = []SelectorKind{SelectAny, SelectUser, SelectGroup, SelectTag, SelectDevice, SelectHost, SelectPrefix}

// checkPortsNeeded reports a rule whose "ports" is missing although a
// destination other than a service needs it, or present although every
// destination is a service (which brings its own certified port and
// protocol, so "ports" would say nothing).
func (p *parser) checkPortsNeeded(e *hujson.Value, f map[string]*hujson.Value, i int, to []Selector) {
	if f["to"] != nil && len(to) == 0 {
		return // "to" had problems of its own
	}
	onlyServices := f["to"] != nil && !slices.ContainsFunc(to, func(s Selector) bool { return s.Kind != SelectService })
	switch pv := f["ports"]; {
	case pv == nil && !onlyServices:
		p.errorf(e.StartOffset, "rules[%d] has no %q (only a rule whose every destination is svc:NAME may omit it)", i, "ports")
	case pv != nil && onlyServices:
		p.errorf(pv.StartOffset, "rules[%d]: %q does not apply to svc:NAME destinations, which are reached at the port and protocol their certificates give: remove it, or add the destinations it is for", i, "ports")
	}
}
