package reason

import (
	"errors"
	"fmt"
	"io"
	"testing"
)

type kind string

type kindMessage struct{}

func (kindMessage) Format(r string, err error) string { return fmt.Sprintf("refused (%s): %v", r, err) }

type other string

type otherMessage struct{}

func (otherMessage) Format(r string, err error) string { return "other " + r }

func TestErrorOfNew(t *testing.T) {
	err := fmt.Errorf("loading: %w", New[kind, kindMessage]("bad", "field %s: %w", "x", io.EOF))
	if got := Of[kind, kindMessage](err); got != "bad" {
		t.Fatalf("Of = %q, want bad", got)
	}
	if got := err.Error(); got != "loading: refused (bad): field x: EOF" {
		t.Fatalf("message %q", got)
	}
	if !errors.Is(err, io.EOF) {
		t.Fatal("the cause is not wrapped")
	}
	// Another package's reasons are another type: not found in this chain.
	if got := Of[other, otherMessage](err); got != "" {
		t.Fatalf("Of another kind = %q, want none", got)
	}
	if got := Of[kind, kindMessage](io.EOF); got != "" {
		t.Fatalf("Of a plain error = %q", got)
	}
	if got := Of[kind, kindMessage](nil); got != "" {
		t.Fatalf("Of nil = %q", got)
	}
}

type errReason string

func (r errReason) Error() string { return string(r) }

func TestIsAndWrap(t *testing.T) {
	err := fmt.Errorf("outer: %w", Wrap[errReason, kindMessage]("bad", io.EOF, "reading %s", "x"))
	if !errors.Is(err, errReason("bad")) || errors.Is(err, errReason("other")) {
		t.Fatal("errors.Is does not test the reason")
	}
	if !errors.Is(err, io.EOF) {
		t.Fatal("the cause is not wrapped")
	}
	if got := err.Error(); got != "outer: refused (bad): reading x: EOF" {
		t.Fatalf("message %q", got)
	}
	// A reason that is not an error never matches a target.
	if errors.Is(New[kind, kindMessage]("bad", "x"), errReason("bad")) {
		t.Fatal("a reason of another type matched")
	}
}
