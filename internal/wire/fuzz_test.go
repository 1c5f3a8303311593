package wire

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
)

func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"type":"snapshot","peers":[{"label":"a","bundle":{"machine":"AAAA"},"endpoints":["10.0.0.1:51820"]}]}`))
	f.Add([]byte(`{"type":"upsert","peer":{"label":"b","bundle":{"machine":""}}}`))
	f.Add([]byte(`{"type":"upsert","peer":{"label":"b","bundle":{"machine":""},"advertisement":"AQID"}}`))
	f.Add([]byte(`{"type":"remove","label":"c"}`))
	f.Add([]byte(`{"type":"upsert"}`))
	f.Add([]byte(`{"type":"upsert","peer":{"label":"` + strings.Repeat("l", MaxLabelSize+1) + `"}}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := DecodeEvent(data)
		if err != nil {
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("decoded event fails validation: %v", err)
		}
		// Each peer is checked on its own; the check must hold its bounds.
		for _, p := range append(e.Peers, derefPeer(e.Peer)...) {
			if p.Validate() == nil && (len(p.Label) > MaxLabelSize || len(p.Endpoints) > MaxEndpoints || len(p.Advertisement) > MaxAdvertisementSize) {
				t.Fatalf("peer over the bounds accepted: %d-byte label, %d endpoints, %d-byte advertisement", len(p.Label), len(p.Endpoints), len(p.Advertisement))
			}
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

func derefPeer(p *Peer) []Peer {
	if p == nil {
		return nil
	}
	return []Peer{*p}
}

func TestEventReaderRefusesOversizedLine(t *testing.T) {
	line := append([]byte(`{"type":"remove","label":"`), bytes.Repeat([]byte("x"), MaxEventSize)...)
	line = append(line, []byte("\"}\n")...)
	if _, err := NewEventReader(bytes.NewReader(line)).Next(); err == nil {
		t.Fatal("oversized event accepted")
	}
}

func TestDecodeEventRejects(t *testing.T) {
	for _, in := range []string{`{"type":"bogus"}`, `{"type":"upsert"}`, `{"type":"remove"}`, `not json`,
		`{"type":"document","doc":{"kind":"` + strings.Repeat("k", MaxDocKindSize+1) + `","data":"AA=="}}`} {
		if _, err := DecodeEvent([]byte(in)); err == nil {
			t.Errorf("DecodeEvent(%s) accepted", in)
		}
	}
}

// TestPeerValidate: a peer's label and endpoints are bounded; a malformed
// peer is refused alone (DecodeEvent takes the event that carries it).
func TestPeerValidate(t *testing.T) {
	ok := Peer{Label: strings.Repeat("l", MaxLabelSize), Endpoints: make([]netip.AddrPort, MaxEndpoints),
		Advertisement: make([]byte, MaxAdvertisementSize)}
	if err := ok.Validate(); err != nil {
		t.Errorf("peer at the bounds refused: %v", err)
	}
	for name, p := range map[string]Peer{
		"no label":       {},
		"long label":     {Label: strings.Repeat("l", MaxLabelSize+1)},
		"many endpoints": {Label: "x", Endpoints: make([]netip.AddrPort, MaxEndpoints+1)},
		"long advert":    {Label: "x", Advertisement: make([]byte, MaxAdvertisementSize+1)},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := DecodeEvent(mustJSON(t, &Event{Type: EventUpsert, Peer: &p})); err != nil {
			t.Errorf("%s: the event carrying it was refused: %v", name, err)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
