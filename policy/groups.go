package policy

import (
	"slices"

	"github.com/certmesh/certmesh/certs"
)

// groupIndex resolves group:NAME to the emails and identity-provider
// groups it includes, following nested groups.
type groupIndex struct {
	defs map[certs.Group]*GroupDef
}

func newGroupIndex(defs []GroupDef) *groupIndex {
	gi := &groupIndex{defs: make(map[certs.Group]*GroupDef, len(defs))}
	for i := range defs {
		if _, dup := gi.defs[defs[i].Name]; !dup {
			gi.defs[defs[i].Name] = &defs[i]
		}
	}
	return gi
}

// expand returns the members of group g: the emails listed in it or in a
// group nested in it, and the identity-provider groups whose members are
// in it (g itself and every nested group's name). g need not be defined:
// then it is the IdP group g alone. Cycles (which Parse refuses) end the
// walk.
func (gi *groupIndex) expand(g certs.Group) (emails []certs.Email, idp []certs.Group) {
	seen := map[certs.Group]bool{}
	var walk func(certs.Group)
	walk = func(g certs.Group) {
		if seen[g] {
			return
		}
		seen[g] = true
		idp = append(idp, g)
		def := gi.defs[g]
		if def == nil {
			return
		}
		for _, m := range def.Members {
			switch m.Kind {
			case SelectUser:
				emails = append(emails, certs.Email(m.Name))
			case SelectGroup:
				walk(certs.Group(m.Name))
			}
		}
	}
	walk(g)
	slices.Sort(emails)
	return slices.Compact(emails), idp
}

// inGroup reports whether user u is in group g.
func (gi *groupIndex) inGroup(g certs.Group, u *certs.UserIdentity) bool {
	if u == nil {
		return false
	}
	emails, idp := gi.expand(g)
	if u.Email != "" && slices.Contains(emails, u.Email) {
		return true
	}
	for _, name := range idp {
		if slices.Contains(u.Groups, name) {
			return true
		}
	}
	return false
}

// matches is the reference meaning of a selector: whether it matches id.
// The compiled evaluator must agree with it (TestCompiledAgreesWithReference).
func (gi *groupIndex) matches(s Selector, id *certs.Identity) bool {
	switch s.Kind {
	case SelectAny:
		return true
	case SelectUser:
		return id.User != nil && string(id.User.Email) == s.Name
	case SelectGroup:
		return gi.inGroup(certs.Group(s.Name), id.User)
	case SelectTag:
		return slices.Contains(id.Tags, certs.Tag(s.Name))
	case SelectDevice:
		return id.DeviceID != "" && string(id.DeviceID) == s.Name
	case SelectHost:
		return id.Hostname != "" && string(id.Hostname) == s.Name
	case SelectPrefix:
		for _, a := range id.Addresses {
			if s.Prefix.Contains(a) {
				return true
			}
		}
	case SelectService:
		// Only whether id offers it: the port and protocol are the rule's
		// business (see Compiled.Decide).
		return slices.ContainsFunc(id.Services, func(svc certs.Service) bool { return svc.Name == s.Name })
	}
	return false
}

// findCycle looks for a cycle of nested groups and returns the definition
// of the group it starts at and the path (first group repeated at the end),
// or nil and nil.
func findCycle(defs []GroupDef) (*GroupDef, []certs.Group) {
	gi := newGroupIndex(defs)
	const (
		unseen = iota
		active
		done
	)
	state := map[certs.Group]int{}
	var stack []certs.Group
	var visit func(g certs.Group) []certs.Group
	visit = func(g certs.Group) []certs.Group {
		switch state[g] {
		case active:
			i := slices.Index(stack, g)
			return append(slices.Clone(stack[i:]), g)
		case done:
			return nil
		}
		state[g] = active
		stack = append(stack, g)
		if def := gi.defs[g]; def != nil {
			for _, m := range def.Members {
				if m.Kind == SelectGroup {
					if c := visit(certs.Group(m.Name)); c != nil {
						return c
					}
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[g] = done
		return nil
	}
	for i := range defs {
		if c := visit(defs[i].Name); c != nil {
			return gi.defs[c[0]], c
		}
	}
	return nil, nil
}

// GroupNames lists the groups the policy names, sorted: every group:NAME a
// rule, tag owner or group member uses must be defined under "groups"
// (Parse refuses it otherwise), so these are the definitions' names. A
// user's identity-provider group that is not among them cannot change a
// decision of this policy (the CA keeps these when a user is in more groups
// than a certificate can carry).
func (p *Policy) GroupNames() []certs.Group {
	out := make([]certs.Group, 0, len(p.Groups))
	for _, g := range p.Groups {
		out = append(out, g.Name)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
