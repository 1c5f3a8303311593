package main

import "testing"

// TestSpliceSubsection: -only relay-throughput replaces its subsection and
// nothing else of the section, whether another subsection follows or not.
func TestSpliceSubsection(t *testing.T) {
	doc := "# r\n\n" + pathsHeading + "\n\nintro\n\n### A\n\na\n\n" + tpHeading + "\n\nold\n\n### Roaming\n\nroam\n\n## Micro-benchmarks\n\nm\n"
	got, err := spliceSubsection([]byte(doc), pathsHeading, tpHeading, []byte(tpHeading+"\n\nnew\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := pathsHeading + "\n\nintro\n\n### A\n\na\n\n" + tpHeading + "\n\nnew\n\n### Roaming\n\nroam\n\n"
	if string(got) != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	last := "# r\n\n" + pathsHeading + "\n\n" + tpHeading + "\n\nold\n"
	if got, err := spliceSubsection([]byte(last), pathsHeading, tpHeading, []byte("X\n")); err != nil || string(got) != pathsHeading+"\n\nX\n" {
		t.Fatalf("last subsection: %q, %v", got, err)
	}
	if _, err := spliceSubsection([]byte("# r\n\n"+pathsHeading+"\n\nno subsection\n"), pathsHeading, tpHeading, nil); err == nil {
		t.Fatal("a section without the subsection was accepted")
	}
}
