package wire

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// sizedEvent is a document event whose JSON encoding is exactly n bytes.
func sizedEvent(t *testing.T, n int) *Event {
	t.Helper()
	// The data is base64 (4 bytes per 3), the kind pads by single bytes.
	for kind := 1; kind <= 4; kind++ {
		e := &Event{Type: EventDocument, Doc: &Document{Kind: DocKind(strings.Repeat("k", kind)), Data: []byte{1}}}
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		rest := n - len(b) + 4 // what base64 may take
		if rest%4 == 0 && rest > 0 {
			e.Doc.Data = make([]byte, rest/4*3)
			if b, _ := json.Marshal(e); len(b) != n {
				t.Fatalf("sized event is %d bytes, want %d", len(b), n)
			}
			return e
		}
	}
	t.Fatalf("no event of %d bytes", n)
	return nil
}

// TestEventSizeBoundary: the encoder and the reader agree on the limit.
// An event of exactly MaxEventSize bytes is written and read; one byte
// more is refused by both, so a coordinator cannot send an event the
// agent must refuse (which would end the watch and loop).
func TestEventSizeBoundary(t *testing.T) {
	for _, c := range []struct {
		size int
		ok   bool
	}{{MaxEventSize - 1, true}, {MaxEventSize, true}, {MaxEventSize + 1, false}} {
		e := sizedEvent(t, c.size)
		var buf bytes.Buffer
		err := EncodeEvent(&buf, e)
		if c.ok != (err == nil) {
			t.Errorf("EncodeEvent of %d bytes (limit %d): err = %v, want ok=%v", c.size, MaxEventSize, err, c.ok)
		}
		// The reader, on the same line as the encoder writes it (or would).
		line, _ := json.Marshal(e)
		got, err := NewEventReader(bytes.NewReader(append(line, '\n', '\n'))).Next()
		if c.ok != (err == nil) {
			t.Errorf("EventReader on %d bytes (limit %d): err = %v, want ok=%v", c.size, MaxEventSize, err, c.ok)
		}
		if err == nil && len(got.Doc.Data) != len(e.Doc.Data) {
			t.Errorf("EventReader on %d bytes: got %d bytes of data, want %d", c.size, len(got.Doc.Data), len(e.Doc.Data))
		}
		if _, err := DecodeEvent(line); c.ok != (err == nil) {
			t.Errorf("DecodeEvent of %d bytes: err = %v, want ok=%v", c.size, err, c.ok)
		}
	}
}

// TestEventReaderAfterLimitEvent: the event after a maximal one is read too.
func TestEventReaderAfterLimitEvent(t *testing.T) {
	var buf bytes.Buffer
	for _, e := range []*Event{sizedEvent(t, MaxEventSize), {Type: EventRemove, Label: "next"}} {
		if err := EncodeEvent(&buf, e); err != nil {
			t.Fatal(err)
		}
	}
	er := NewEventReader(&buf)
	for i, want := range []EventType{EventDocument, EventRemove} {
		e, err := er.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if e.Type != want {
			t.Fatalf("event %d is %s, want %s", i, e.Type, want)
		}
	}
}
