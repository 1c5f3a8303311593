package wgdev

import (
	"net/netip"
	"strings"
	"testing"
)

// TestSetEndpoint: an endpoint is set on a configured peer only; a line
// break cannot smuggle further UAPI lines (a new peer, another key) in.
func TestSetEndpoint(t *testing.T) {
	a, b, c := newNode(t, 1), newNode(t, 2), newNode(t, 3)
	addPeer(t, a, b)
	want := netip.MustParseAddrPort("127.0.0.1:4242")
	if err := a.dev.SetEndpoint(b.pub(), want.String()); err != nil {
		t.Fatal(err)
	}
	if st, _ := peerOf(t, a, b.pub()); st.Endpoint != want || st.EndpointText != want.String() {
		t.Fatalf("endpoint %v (%q), want %v", st.Endpoint, st.EndpointText, want)
	}
	for _, bad := range []string{"", "127.0.0.1:1\npublic_key=" + c.pub().Hex(), "a=b", "nonsense"} {
		if err := a.dev.SetEndpoint(b.pub(), bad); err == nil {
			t.Errorf("SetEndpoint(%q) accepted", bad)
		}
	}
	if err := a.dev.SetEndpoint(c.pub(), want.String()); err == nil || !strings.Contains(err.Error(), "no such peer") {
		t.Fatalf("SetEndpoint of an unknown peer: %v", err)
	}
	ps, err := a.dev.Peers()
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Endpoint != want {
		t.Fatalf("after the refused calls the device has %+v", ps)
	}
}
