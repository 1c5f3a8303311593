package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tailscale/hujson"

	"github.com/certmesh/certmesh/certs"
)

// Limits of a policy file.
const (
	// MaxSize bounds a policy file in bytes.
	MaxSize = 1 << 20
	// MaxDepth bounds the nesting of arrays and objects (the language needs 4).
	MaxDepth = 16
	// MaxProblems is how many problems a ParseError lists; it counts the
	// rest.
	MaxProblems = 100
	// MaxNameLength bounds a rule's or test's name.
	MaxNameLength = 128
)

// Problem is one thing wrong with a policy file.
type Problem struct {
	Pos Position
	Msg string
}

func (p Problem) String() string { return p.Pos.String() + ": " + p.Msg }

// ParseError is every problem Parse found, in file order.
type ParseError struct {
	Problems []Problem
	// More counts the problems found beyond MaxProblems.
	More int
}

func (e *ParseError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(p.String())
	}
	if e.More > 0 {
		fmt.Fprintf(&b, "\n(and %d more problems)", e.More)
	}
	return b.String()
}

// Parse reads and validates a policy file (see the package documentation
// for the language). On failure the error is a *ParseError listing every
// problem with its position.
func Parse(data []byte) (*Policy, error) {
	p := &parser{src: data}
	pol := p.parse()
	if len(p.problems) > 0 {
		sort.SliceStable(p.problems, func(i, j int) bool { return p.problems[i].Pos.Offset < p.problems[j].Pos.Offset })
		return nil, &ParseError{Problems: p.problems, More: p.more}
	}
	return pol, nil
}

type parser struct {
	src        []byte
	lineStarts []int
	problems   []Problem
	more       int

	groups map[certs.Group]bool
	tags   map[certs.Tag]bool
}

// pos converts a byte offset to a position.
func (p *parser) pos(off int) Position {
	if p.lineStarts == nil {
		p.lineStarts = []int{0}
		for i, c := range p.src {
			if c == '\n' {
				p.lineStarts = append(p.lineStarts, i+1)
			}
		}
	}
	off = max(0, min(off, len(p.src)))
	line := sort.Search(len(p.lineStarts), func(i int) bool { return p.lineStarts[i] > off }) - 1
	return Position{Offset: off, Line: line + 1, Column: off - p.lineStarts[line] + 1}
}

func (p *parser) errorf(off int, format string, args ...any) {
	if len(p.problems) >= MaxProblems {
		p.more++
		return
	}
	p.problems = append(p.problems, Problem{Pos: p.pos(off), Msg: fmt.Sprintf(format, args...)})
}

var hujsonErrRE = regexp.MustCompile(`^hujson: line (\d+), column (\d+): (.*)$`)

func (p *parser) parse() *Policy {
	if len(p.src) > MaxSize {
		p.errorf(MaxSize, "policy is %d bytes, at most %d allowed", len(p.src), MaxSize)
		return nil
	}
	if !utf8.Valid(p.src) {
		off := 0
		for off < len(p.src) {
			r, n := utf8.DecodeRune(p.src[off:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			off += n
		}
		p.errorf(off, "invalid UTF-8")
		return nil
	}
	if off, msg := prescan(p.src); msg != "" {
		p.errorf(off, "%s", msg)
		return nil
	}
	in := p.src
	if len(in) > 0 && in[len(in)-1] != '\n' {
		// hujson needs a line comment to end in a newline, even at the end
		// of the file; offsets are unchanged.
		in = append(slices.Clone(in), '\n')
	}
	root, err := hujson.Parse(in)
	if err != nil {
		p.syntaxError(err)
		return nil
	}
	pol := &Policy{Source: slices.Clone(p.src)}
	fields := p.object(&root, "the policy", []string{"groups", "tagOwners", "rules", "tests"})
	if fields == nil {
		return nil
	}
	// Definitions first: rules, tests and other definitions may name a group
	// or tag defined further down the file.
	p.groups, p.tags = map[certs.Group]bool{}, map[certs.Tag]bool{}
	if v := fields["groups"]; v != nil {
		pol.Groups = p.groupDefs(v)
	}
	if v := fields["tagOwners"]; v != nil {
		pol.Tags = p.tagDefs(v)
	}
	for i := range pol.Groups {
		g := &pol.Groups[i]
		for j := range g.Members {
			p.checkReference(g.Members[j])
		}
	}
	for i := range pol.Tags {
		for _, o := range pol.Tags[i].Owners {
			p.checkReference(o)
		}
	}
	if def, cycle := findCycle(pol.Groups); def != nil {
		names := make([]string, len(cycle))
		for i, g := range cycle {
			names[i] = "group:" + string(g)
		}
		p.errorf(def.Pos.Offset, "groups nest in a cycle: %s", strings.Join(names, " → "))
	}
	if v := fields["rules"]; v != nil {
		pol.Rules = p.rules(v)
	}
	if v := fields["tests"]; v != nil {
		pol.Tests = p.tests(v)
	}
	return pol
}

// syntaxError turns hujson's error, which gives a line and column in its
// message, into a problem.
func (p *parser) syntaxError(err error) {
	m := hujsonErrRE.FindStringSubmatch(err.Error())
	if m == nil {
		p.errorf(0, "syntax error: %v", err)
		return
	}
	line, _ := strconv.Atoi(m[1])
	col, _ := strconv.Atoi(m[2])
	p.pos(0) // fill lineStarts
	off := 0
	if line >= 1 && line <= len(p.lineStarts) {
		off = p.lineStarts[line-1] + col - 1
	}
	p.errorf(off, "syntax error: %s", m[3])
}

// prescan looks, before the recursive parser, for nesting deeper than
// MaxDepth and for a string left open at the end of its line (which the
// parser would report only at the end of the file). It skips strings and
// comments, and returns the offset of the problem and a message, or "".
func prescan(b []byte) (int, string) {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			start := i
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\n' {
					break
				}
				if b[i] == '\\' {
					i++
				}
			}
			if i >= len(b) || b[i] != '"' {
				return start, "string is not closed on its line"
			}
		case c == '/' && i+1 < len(b) && b[i+1] == '/':
			for i < len(b) && b[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(b) && b[i+1] == '*':
			end := bytes.Index(b[i+2:], []byte("*/"))
			if end < 0 {
				return i, "comment is not closed"
			}
			i += 2 + end + 1
		case c == '[' || c == '{':
			depth++
			if depth > MaxDepth {
				return i, fmt.Sprintf("nested more than %d levels deep", MaxDepth)
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return 0, ""
}

// kindName names a JSON value's kind for messages.
func kindName(v *hujson.Value) string {
	switch v.Value.Kind() {
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return "a value"
}

// object checks that v is an object whose member names are among known
// (any name when known is nil) and unique; it returns the members by name
// (nil if v is not an object). Unknown and duplicate members are reported
// and left out.
func (p *parser) object(v *hujson.Value, what string, known []string) map[string]*hujson.Value {
	members, ok := p.members(v, what)
	if !ok {
		return nil
	}
	out := map[string]*hujson.Value{}
	for _, m := range members {
		if known != nil && !slices.Contains(known, m.name) {
			p.errorf(m.pos, "unknown field %q in %s (want %s)", m.name, what, strings.Join(known, ", "))
			continue
		}
		out[m.name] = m.value
	}
	return out
}

type member struct {
	name  string
	pos   int
	value *hujson.Value
}

// members returns an object's members in order, reporting a non-object
// and duplicate names (the duplicates are left out).
func (p *parser) members(v *hujson.Value, what string) ([]member, bool) {
	obj, ok := v.Value.(*hujson.Object)
	if !ok {
		p.errorf(v.StartOffset, "%s must be an object, not %s", what, kindName(v))
		return nil, false
	}
	seen := map[string]bool{}
	var out []member
	for i := range obj.Members {
		m := &obj.Members[i]
		name, ok := p.unquote(m.Name.Value.(hujson.Literal), m.Name.StartOffset, "member name")
		if !ok {
			continue
		}
		if seen[name] {
			p.errorf(m.Name.StartOffset, "%q appears twice in %s", name, what)
			continue
		}
		seen[name] = true
		out = append(out, member{name: name, pos: m.Name.StartOffset, value: &m.Value})
	}
	return out, true
}

// str returns v as a string.
func (p *parser) str(v *hujson.Value, what string) (string, bool) {
	lit, ok := v.Value.(hujson.Literal)
	if !ok || lit.Kind() != '"' {
		p.errorf(v.StartOffset, "%s must be a string, not %s", what, kindName(v))
		return "", false
	}
	return p.unquote(lit, v.StartOffset, what)
}

// unquote decodes a JSON string literal (which the parser validated).
func (p *parser) unquote(lit hujson.Literal, off int, what string) (string, bool) {
	if bytes.IndexByte(lit, '\\') < 0 {
		return string(lit[1 : len(lit)-1]), true // the common case, no escapes
	}
	var s string
	if err := json.Unmarshal(lit, &s); err != nil {
		p.errorf(off, "%s: %v", what, err)
		return "", false
	}
	return s, true
}

// array returns v's elements.
func (p *parser) array(v *hujson.Value, what string) ([]hujson.Value, bool) {
	arr, ok := v.Value.(*hujson.Array)
	if !ok {
		p.errorf(v.StartOffset, "%s must be an array, not %s", what, kindName(v))
		return nil, false
	}
	return arr.Elements, true
}

// strings returns v as an array of strings with their offsets; nonEmpty
// reports an empty array.
func (p *parser) strs(v *hujson.Value, what string, nonEmpty bool) ([]string, []int) {
	elems, ok := p.array(v, what)
	if !ok {
		return nil, nil
	}
	if nonEmpty && len(elems) == 0 {
		p.errorf(v.StartOffset, "%s must not be empty", what)
	}
	var ss []string
	var offs []int
	for i := range elems {
		if s, ok := p.str(&elems[i], what+" entries"); ok {
			ss = append(ss, s)
			offs = append(offs, elems[i].StartOffset)
		}
	}
	return ss, offs
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
			var e certs.Email
			e, err = certs.ParseEmail(rest)
			sel = Selector{Kind: SelectUser, Name: string(e)}
		case "group":
			var g certs.Group
			g, err = certs.ParseGroup(rest)
			sel = Selector{Kind: SelectGroup, Name: string(g)}
		case "tag":
			var t certs.Tag
			if rest == "" || strings.HasPrefix(rest, "tag:") {
				err = fmt.Errorf("invalid tag %q", s)
			} else {
				t, err = certs.ParseTag(rest)
			}
			sel = Selector{Kind: SelectTag, Name: string(t)}
		case "device":
			var d certs.DeviceID
			d, err = certs.ParseDeviceID(rest)
			sel = Selector{Kind: SelectDevice, Name: string(d)}
		case "host":
			var h certs.Hostname
			h, err = certs.ParseHostname(rest)
			sel = Selector{Kind: SelectHost, Name: string(h)}
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
	return Selector{}, fmt.Errorf("unknown selector %q: want *, user:EMAIL, group:NAME, tag:NAME, device:ID, host:NAME, an IP address or a CIDR", s)
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

// name validates a rule's or test's name.
func (p *parser) name(v *hujson.Value, what string) (string, bool) {
	s, ok := p.str(v, what)
	if !ok {
		return "", false
	}
	if s == "" || len(s) > MaxNameLength || strings.TrimSpace(s) != s {
		p.errorf(v.StartOffset, "%s must be 1 to %d bytes without leading or trailing space", what, MaxNameLength)
		return "", false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			p.errorf(v.StartOffset, "%s contains %U", what, r)
			return "", false
		}
	}
	return s, true
}

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

// parsePort parses one entry of "ports".
func parsePort(s string) (PortSpec, error) {
	switch s {
	case "*":
		return PortSpec{}, nil
	case "icmp":
		return PortSpec{Proto: ProtoICMP}, nil
	}
	proto, rng, ok := strings.Cut(s, ":")
	var ps PortSpec
	switch proto {
	case "tcp":
		ps.Proto = ProtoTCP
	case "udp":
		ps.Proto = ProtoUDP
	default:
		ok = false
	}
	if !ok {
		return ps, fmt.Errorf("malformed port %q: want *, icmp, tcp:PORT, udp:PORT, tcp:FIRST-LAST or tcp:*", s)
	}
	if rng == "*" {
		ps.First, ps.Last = 0, 65535
		return ps, nil
	}
	lo, hi, isRange := strings.Cut(rng, "-")
	first, err1 := parsePortNumber(lo)
	last, err2 := first, error(nil)
	if isRange {
		last, err2 = parsePortNumber(hi)
	}
	switch {
	case err1 != nil:
		return ps, fmt.Errorf("malformed port %q: %v", s, err1)
	case err2 != nil:
		return ps, fmt.Errorf("malformed port %q: %v", s, err2)
	case first > last:
		return ps, fmt.Errorf("malformed port %q: the range ends before it starts", s)
	}
	ps.First, ps.Last = first, last
	return ps, nil
}

// parsePortNumber parses a decimal port, 1 to 65535.
func parsePortNumber(s string) (uint16, error) {
	if s == "" || strings.Trim(s, "0123456789") != "" || len(s) > 5 {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %d is out of range 1-65535", n)
	}
	return uint16(n), nil
}
