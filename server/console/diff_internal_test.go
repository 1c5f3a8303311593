package console

import (
	"strings"
	"testing"
)

func TestLineDiff(t *testing.T) {
	d, ok := lineDiff("a\nb\nc\nd", "a\nc\nx\nd")
	if !ok {
		t.Fatal("not diffed")
	}
	var got []string
	for _, l := range d {
		got = append(got, l.Op+l.Text)
	}
	if want := " a|-b| c|+x| d"; strings.Join(got, "|") != want {
		t.Fatalf("diff %q, want %q", strings.Join(got, "|"), want)
	}
	if _, ok := lineDiff(strings.Repeat("x\n", maxDiffLines+1), "x"); ok {
		t.Fatal("a source over the limit was diffed")
	}
}
