package policy

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
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
