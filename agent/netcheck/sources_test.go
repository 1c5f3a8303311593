package netcheck

import (
	"strings"
	"testing"

	"github.com/certmesh/certmesh/agent/relayc"
)

func TestParseRelay(t *testing.T) {
	got, err := ParseRelay("name=eu,udp=relay.example:3478,udp_alt=relay.example:3479,tls=relay.example:443")
	want := relayc.Server{Name: "eu", UDP: "relay.example:3478", UDPAlt: "relay.example:3479", TLS: "relay.example:443"}
	if err != nil || got != want {
		t.Fatalf("ParseRelay: %+v, %v; want %+v", got, err, want)
	}
	for in, says := range map[string]string{
		"udp=relay.example":          "want host:port",
		"name=x":                     "give udp=HOST:PORT or tls=HOST:PORT",
		"udp=a:1,port=2":             `unknown key "port"`,
		"relay.example:3478":         "is not key=value",
		"tls=relay.example:443,udp=": "want host:port",
	} {
		if _, err := ParseRelay(in); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("ParseRelay(%q): %v, want an error saying %q", in, err, says)
		}
	}
}

func TestServerRelay(t *testing.T) {
	got, err := ServerRelay("https://ca.example:8443")
	want := relayc.Server{Name: "server", UDP: "ca.example:3478", UDPAlt: "ca.example:3479", TLS: "ca.example:8443"}
	if err != nil || got != want {
		t.Fatalf("ServerRelay: %+v, %v; want %+v", got, err, want)
	}
	if got, _ := ServerRelay("https://[2001:db8::1]"); got.TLS != "[2001:db8::1]:443" || got.UDP != "[2001:db8::1]:3478" {
		t.Fatalf("IPv6 server: %+v", got)
	}
	for _, bad := range []string{"http://ca.example", "ca.example:8443", "https://"} {
		if _, err := ServerRelay(bad); err == nil || !strings.Contains(err.Error(), "want https://host[:port]") {
			t.Errorf("ServerRelay(%q): %v", bad, err)
		}
	}
}
