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
		for _, fld := range []string{"from", "to", "ports"} {
			if f[fld] == nil {
				p.errorf(e.StartOffset, "rules[%d] has no %q", i, fld)
			}
		}
		if fv := f["from"]; fv != nil {
			r.From = p.selectors(fv, `"from"`, true, nil, "")
		}
		if tv := f["to"]; tv != nil {
			r.To = p.selectors(tv, `"to"`, true, nil, "")
		}
		for _, s := range slices.Concat(r.From, r.To) {
			p.checkReference(s)
		}
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
