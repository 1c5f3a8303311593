package policy

import (
	"fmt"
	"strings"

	"github.com/tailscale/hujson"

	"github.com/certmesh/certmesh/certs"
)

func (p *parser) groupDefs(v *hujson.Value) []GroupDef {
	return definitions(p, v, `"groups"`, "group",
		func(m member, name string) (GroupDef, bool) {
			g, err := certs.ParseGroup(name)
			if err != nil {
				p.errorf(m.pos, "%v", err)
				return GroupDef{}, false
			}
			p.groups[g] = true
			return GroupDef{Name: g, Pos: p.pos(m.pos)}, true
		},
		func(d *GroupDef, value *hujson.Value) {
			d.Members = p.selectors(value, fmt.Sprintf("members of %q", "group:"+string(d.Name)), false,
				[]SelectorKind{SelectUser, SelectGroup}, "a group's members are user:EMAIL and group:NAME")
		})
}

func (p *parser) tagDefs(v *hujson.Value) []TagDef {
	return definitions(p, v, `"tagOwners"`, "tag",
		func(m member, name string) (TagDef, bool) {
			t, err := certs.ParseTag(name)
			if err != nil || strings.HasPrefix(name, "tag:") {
				p.errorf(m.pos, "invalid tag %q: want lower-case letters, digits and '-'", m.name)
				return TagDef{}, false
			}
			p.tags[t] = true
			return TagDef{Tag: t, Pos: p.pos(m.pos)}, true
		},
		func(d *TagDef, value *hujson.Value) {
			d.Owners = p.selectors(value, fmt.Sprintf("owners of %q", "tag:"+string(d.Tag)), false,
				[]SelectorKind{SelectUser, SelectGroup, SelectTag}, "a tag's owners are user:EMAIL, group:NAME and tag:NAME")
		})
}

// definitions reads the object what, whose member names are kind:NAME.
// define makes a definition of each member's NAME (reporting a bad one
// itself); once every name is defined, so that values may name any of
// them, fill reads each definition's value.
func definitions[D any](p *parser, v *hujson.Value, what, kind string,
	define func(m member, name string) (D, bool), fill func(d *D, value *hujson.Value)) []D {
	members, ok := p.members(v, what)
	if !ok {
		return nil
	}
	var defs []D
	var vals []*hujson.Value
	for _, m := range members {
		name, ok := strings.CutPrefix(m.name, kind+":")
		if !ok {
			p.errorf(m.pos, "%s name %q must start with \"%s:\"", kind, m.name, kind)
			continue
		}
		if d, ok := define(m, name); ok {
			defs = append(defs, d)
			vals = append(vals, m.value)
		}
	}
	for i := range defs {
		fill(&defs[i], vals[i])
	}
	return defs
}
