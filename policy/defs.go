package policy

import (
	"fmt"
	"strings"

	"github.com/tailscale/hujson"

	"github.com/certmesh/certmesh/certs"
)

func (p *parser) groupDefs(v *hujson.Value) []GroupDef {
	members, ok := p.members(v, `"groups"`)
	if !ok {
		return nil
	}
	var defs []GroupDef
	var vals []*hujson.Value
	for _, m := range members {
		name, ok := strings.CutPrefix(m.name, "group:")
		if !ok {
			p.errorf(m.pos, "group name %q must start with \"group:\"", m.name)
			continue
		}
		g, err := certs.ParseGroup(name)
		if err != nil {
			p.errorf(m.pos, "%v", err)
			continue
		}
		p.groups[g] = true
		defs = append(defs, GroupDef{Name: g, Pos: p.pos(m.pos)})
		vals = append(vals, m.value)
	}
	for i := range defs {
		defs[i].Members = p.selectors(vals[i], fmt.Sprintf("members of %q", "group:"+string(defs[i].Name)), false,
			[]SelectorKind{SelectUser, SelectGroup}, "a group's members are user:EMAIL and group:NAME")
	}
	return defs
}

func (p *parser) tagDefs(v *hujson.Value) []TagDef {
	members, ok := p.members(v, `"tagOwners"`)
	if !ok {
		return nil
	}
	var defs []TagDef
	var vals []*hujson.Value
	for _, m := range members {
		name, ok := strings.CutPrefix(m.name, "tag:")
		if !ok {
			p.errorf(m.pos, "tag name %q must start with \"tag:\"", m.name)
			continue
		}
		t, err := certs.ParseTag(name)
		if err != nil || strings.HasPrefix(name, "tag:") {
			p.errorf(m.pos, "invalid tag %q: want lower-case letters, digits and '-'", m.name)
			continue
		}
		p.tags[t] = true
		defs = append(defs, TagDef{Tag: t, Pos: p.pos(m.pos)})
		vals = append(vals, m.value)
	}
	for i := range defs {
		defs[i].Owners = p.selectors(vals[i], fmt.Sprintf("owners of %q", "tag:"+string(defs[i].Tag)), false,
			[]SelectorKind{SelectUser, SelectGroup, SelectTag}, "a tag's owners are user:EMAIL, group:NAME and tag:NAME")
	}
	return defs
}
