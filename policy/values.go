package policy

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"unicode"

	"github.com/tailscale/hujson"
)

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
