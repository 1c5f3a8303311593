package policy

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strings"
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
