package relayc

import (
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/internal/wire"
)

func TestFromWire(t *testing.T) {
	good := func() wire.RelayCredentialsResponse {
		return wire.RelayCredentialsResponse{Username: "c1:1:dev", Realm: "corp.example", Expires: time.Unix(1e9, 0),
			Relays: []wire.RelayServer{{Name: "server", UDP: "ca.example:3478", UDPAlt: "ca.example:3479", TLS: "ca.example:443", Password: "p"}}}
	}
	c, err := FromWire(good())
	if err != nil || c.Username != "c1:1:dev" || len(c.Servers) != 1 || c.Servers[0] != (Server{Name: "server", UDP: "ca.example:3478", UDPAlt: "ca.example:3479", TLS: "ca.example:443", Password: "p"}) {
		t.Fatalf("FromWire: %+v, %v", c, err)
	}
	for says, edit := range map[string]func(*wire.RelayCredentialsResponse){
		"no username":                  func(r *wire.RelayCredentialsResponse) { r.Username = "" },
		"username of 600 bytes":        func(r *wire.RelayCredentialsResponse) { r.Username = strings.Repeat("u", 600) },
		"no expiry":                    func(r *wire.RelayCredentialsResponse) { r.Expires = time.Time{} },
		"no relay listed":              func(r *wire.RelayCredentialsResponse) { r.Relays = nil },
		"17 relays":                    func(r *wire.RelayCredentialsResponse) { r.Relays = make([]wire.RelayServer, 17) },
		"without a password":           func(r *wire.RelayCredentialsResponse) { r.Relays[0].Password = "" },
		"neither a UDP nor a TLS":      func(r *wire.RelayCredentialsResponse) { r.Relays[0].UDP, r.Relays[0].TLS = "", "" },
		`"ca.example": want host:port`: func(r *wire.RelayCredentialsResponse) { r.Relays[0].TLS = "ca.example" },
	} {
		r := good()
		edit(&r)
		if c, err := FromWire(r); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("FromWire: %+v, %v; want an error saying %q", c, err, says)
		}
	}
}
