package wire

import (
	"bytes"
	"testing"
)

func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"type":"snapshot","peers":[{"label":"a","bundle":{"machine":"AAAA"},"endpoints":["10.0.0.1:51820"]}]}`))
	f.Add([]byte(`{"type":"upsert","peer":{"label":"b","bundle":{"machine":""}}}`))
	f.Add([]byte(`{"type":"remove","label":"c"}`))
	f.Add([]byte(`{"type":"upsert"}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := DecodeEvent(data)
		if err != nil {
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("decoded event fails validation: %v", err)
		}
		var buf bytes.Buffer
		if err := EncodeEvent(&buf, e); err != nil {
			return
		}
		if _, err := NewEventReader(&buf).Next(); err != nil {
			t.Fatalf("re-encoded event does not decode: %v", err)
		}
	})
}

func TestEventReaderRefusesOversizedLine(t *testing.T) {
	line := append([]byte(`{"type":"remove","label":"`), bytes.Repeat([]byte("x"), MaxEventSize)...)
	line = append(line, []byte("\"}\n")...)
	if _, err := NewEventReader(bytes.NewReader(line)).Next(); err == nil {
		t.Fatal("oversized event accepted")
	}
}

func TestDecodeEventRejects(t *testing.T) {
	for _, in := range []string{`{"type":"bogus"}`, `{"type":"upsert"}`, `{"type":"remove"}`, `not json`, `{"type":"upsert","peer":{"label":""}}`} {
		if _, err := DecodeEvent([]byte(in)); err == nil {
			t.Errorf("DecodeEvent(%s) accepted", in)
		}
	}
}
