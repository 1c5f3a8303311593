package policy

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/certmesh/certmesh/certs"
)

// Position is a place in a policy file: a byte offset, and the 1-based line
// and column (in bytes) an editor shows.
type Position struct {
	Offset int
	Line   int
	Column int
}

func (p Position) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Column) }

// Proto is an IP protocol number.
type Proto uint8

// The protocols the policy language names.
const (
	ProtoICMP   Proto = 1
	ProtoTCP    Proto = 6
	ProtoUDP    Proto = 17
	ProtoICMPv6 Proto = 58
)

func (p Proto) String() string {
	switch p {
	case ProtoICMP:
		return "icmp"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMPv6:
		return "icmpv6"
	}
	return "proto-" + strconv.Itoa(int(p))
}

// SelectorKind is what a source or destination selector names.
type SelectorKind uint8

// The kinds of selector.
const (
	SelectAny     SelectorKind = iota + 1 // *
	SelectUser                            // user:EMAIL
	SelectGroup                           // group:NAME
	SelectTag                             // tag:NAME
	SelectDevice                          // device:ID
	SelectHost                            // host:NAME
	SelectPrefix                          // an address or CIDR
	SelectService                         // svc:NAME (destinations only)
)

// Selector is one entry of a rule's "from" or "to", a group's members or a
// tag's owners.
type Selector struct {
	Kind SelectorKind
	// Name is the email (SelectUser), group name without "group:"
	// (SelectGroup), tag without "tag:" (SelectTag), device ID, hostname or
	// service name (SelectService), in canonical form; empty for SelectAny
	// and SelectPrefix.
	Name string
	// Prefix is the range of SelectPrefix (a single address is a /32 or
	// /128).
	Prefix netip.Prefix
	Pos    Position
}

// String is the selector as the language writes it.
func (s Selector) String() string {
	switch s.Kind {
	case SelectAny:
		return "*"
	case SelectUser:
		return "user:" + s.Name
	case SelectGroup:
		return "group:" + s.Name
	case SelectTag:
		return "tag:" + s.Name
	case SelectDevice:
		return "device:" + s.Name
	case SelectHost:
		return "host:" + s.Name
	case SelectService:
		return "svc:" + s.Name
	case SelectPrefix:
		if s.Prefix.IsSingleIP() {
			return s.Prefix.Addr().String()
		}
		return s.Prefix.String()
	}
	return "?"
}

// PortSpec is one entry of a rule's "ports".
type PortSpec struct {
	// Proto is ProtoTCP or ProtoUDP (with the range First-Last), ProtoICMP
	// (ICMP and ICMPv6), or 0 for "*": every protocol and port.
	Proto       Proto
	First, Last uint16
	Pos         Position
}

// String is the port as the language writes it.
func (p PortSpec) String() string {
	switch p.Proto {
	case 0:
		return "*"
	case ProtoICMP:
		return "icmp"
	}
	switch {
	case p.First == 0 && p.Last == 65535:
		return p.Proto.String() + ":*"
	case p.First == p.Last:
		return p.Proto.String() + ":" + strconv.Itoa(int(p.First))
	}
	return fmt.Sprintf("%s:%d-%d", p.Proto, p.First, p.Last)
}

// matches reports whether the spec accepts a packet of proto to port.
func (p PortSpec) matches(proto Proto, port uint16) bool {
	switch p.Proto {
	case 0:
		return true
	case ProtoICMP:
		return proto == ProtoICMP || proto == ProtoICMPv6
	}
	return proto == p.Proto && p.First <= port && port <= p.Last
}

// Condition is a rule's "when": conditions on the source.
type Condition struct {
	// Attestation is the lowest attestation level the source device must
	// have ("" for none): AttestationTPM requires a TPM-attested device,
	// AttestationToken any valid level.
	Attestation certs.AttestationLevel
}

// holds reports whether the source identity meets the condition.
func (c Condition) holds(src *certs.Identity) bool {
	switch c.Attestation {
	case "":
		return true
	case certs.AttestationTPM:
		return src.Attestation == certs.AttestationTPM
	case certs.AttestationToken:
		return src.Attestation.Valid()
	}
	return false
}

// Rule is one accept rule.
type Rule struct {
	// Name is the rule's "name", or "rules[i]" when it has none. Names are
	// unique within a policy.
	Name string
	From []Selector
	// To are the destinations. A SelectService destination brings its own
	// port and protocol (the certified service's); Ports apply to the
	// others, and are empty when every destination is a service.
	To    []Selector
	Ports []PortSpec
	When  Condition
	Pos   Position // of the rule's opening brace
}

// GroupDef is a group defined in "groups".
type GroupDef struct {
	Name    certs.Group
	Members []Selector // SelectUser and SelectGroup only
	Pos     Position   // of the group's name
}

// TagDef is a tag declared in "tagOwners".
type TagDef struct {
	Tag    certs.Tag
	Owners []Selector // SelectUser, SelectGroup and SelectTag only
	Pos    Position   // of the tag's name
}

// Test is one of the policy's own tests.
type Test struct {
	// Name is the test's "name", or "tests[i]" when it has none.
	Name string
	// From and To are the synthetic identities the test evaluates, and
	// FromText and ToText how the file wrote them (an object is shown in
	// compact form).
	From, To         certs.Identity
	FromText, ToText string
	// Via, for a test of routed traffic, is the router the packet goes
	// through (To then has exactly one address, the destination), and
	// ViaText how the file wrote it; nil for a packet to To itself.
	Via     *certs.Identity
	ViaText string
	Proto   Proto
	Port    uint16
	// Accept is the expected decision: true for "accept", false for "drop".
	Accept bool
	Pos    Position // of the test's opening brace
}

// Policy is a parsed, validated policy file.
type Policy struct {
	// Source is the exact file Parse read (a copy).
	Source []byte
	Groups []GroupDef
	Tags   []TagDef
	Rules  []Rule
	Tests  []Test
}

// Group returns the definition of a group, or nil.
func (p *Policy) Group(name certs.Group) *GroupDef {
	for i := range p.Groups {
		if p.Groups[i].Name == name {
			return &p.Groups[i]
		}
	}
	return nil
}

// Tag returns the declaration of a tag, or nil.
func (p *Policy) Tag(t certs.Tag) *TagDef {
	for i := range p.Tags {
		if p.Tags[i].Tag == t {
			return &p.Tags[i]
		}
	}
	return nil
}

// CanAssignTag reports whether tagOwners lets the identity by (a user by
// email or group, or a device by its tags) have tag t assigned. It is for
// the CA, which decides what tags a certificate carries; agents never ask.
// An undeclared tag has no owner.
func (p *Policy) CanAssignTag(t certs.Tag, by certs.Identity) bool {
	def := p.Tag(t)
	if def == nil {
		return false
	}
	gi := newGroupIndex(p.Groups)
	for _, o := range def.Owners {
		if gi.matches(o, &by) {
			return true
		}
	}
	return false
}
