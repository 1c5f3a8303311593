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
