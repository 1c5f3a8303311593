package fuzzedit

import (
	"bytes"
	"slices"
	"testing"
)

func TestApply(t *testing.T) {
	orig := []byte("abcdef")
	for _, c := range []struct {
		name  string
		edits []byte
		want  string
	}{
		{"none", nil, "abcdef"},
		{"partial edit ignored", []byte{0, 0, 1}, "abcdef"},
		{"set", Set(1, 'X'), "aXcdef"},
		{"set wraps", Set(7, 'X'), "aXcdef"},
		{"xor", Xor(0, 'a'^'z'), "zbcdef"},
		{"xor zero", Xor(3, 0), "abcdef"},
		{"insert", Insert(2, '-'), "ab-cdef"},
		{"insert at end", Insert(6, '!'), "abcdef!"},
		{"cut", Cut(3), "abc"},
		{"cut to nothing", Cut(0), ""},
		{"in order", slices.Concat(Cut(2), Insert(2, 'c'), Set(0, 'A')), "Abc"},
		{"on empty", slices.Concat(Cut(0), Set(4, 'x'), Xor(1, 1), Cut(3), Insert(9, 'y')), "y"},
	} {
		if got := Apply(orig, c.edits); string(got) != c.want {
			t.Errorf("%s: Apply = %q, want %q", c.name, got, c.want)
		}
	}
	if string(orig) != "abcdef" {
		t.Fatalf("Apply changed its input: %q", orig)
	}
}

func FuzzApplyNeverPanics(f *testing.F) {
	f.Add([]byte("certificate"), slices.Concat(Set(3, 0), Cut(5)))
	f.Fuzz(func(t *testing.T, orig, edits []byte) {
		keep := bytes.Clone(orig)
		out := Apply(orig, edits)
		if !bytes.Equal(orig, keep) {
			t.Fatal("Apply changed its input")
		}
		if len(out) > len(orig)+len(edits)/editSize {
			t.Fatalf("%d bytes out of %d with %d edits", len(out), len(orig), len(edits)/editSize)
		}
	})
}
