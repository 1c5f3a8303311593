package relayc

import (
	"errors"
	"fmt"
	"net"

	"github.com/certmesh/certmesh/internal/wire"
)

// maxUsername bounds the TURN username taken from the CA's answer (the
// relay's are about 60 bytes; STUN allows 513).
const maxUsername = 513

// FromWire checks the CA's answer to POST /v1/relay/credentials and turns
// it into Credentials: a username, an expiry, 1 to wire.MaxRelays relays
// each with a password and a UDP or TLS address (host:port).
func FromWire(r wire.RelayCredentialsResponse) (Credentials, error) {
	switch {
	case r.Username == "":
		return Credentials{}, errors.New("relay credentials: no username")
	case len(r.Username) > maxUsername:
		return Credentials{}, fmt.Errorf("relay credentials: username of %d bytes, at most %d", len(r.Username), maxUsername)
	case r.Expires.IsZero():
		return Credentials{}, errors.New("relay credentials: no expiry")
	case len(r.Relays) == 0:
		return Credentials{}, errors.New("relay credentials: no relay listed")
	case len(r.Relays) > wire.MaxRelays:
		return Credentials{}, fmt.Errorf("relay credentials: %d relays, at most %d", len(r.Relays), wire.MaxRelays)
	}
	c := Credentials{Username: r.Username, Expires: r.Expires}
	for _, s := range r.Relays {
		if s.Password == "" {
			return Credentials{}, fmt.Errorf("relay credentials: relay %q without a password", s.Name)
		}
		if s.UDP == "" && s.TLS == "" {
			return Credentials{}, fmt.Errorf("relay credentials: relay %q with neither a UDP nor a TLS address", s.Name)
		}
		for _, a := range []string{s.UDP, s.UDPAlt, s.TLS} {
			if _, _, err := net.SplitHostPort(a); a != "" && err != nil {
				return Credentials{}, fmt.Errorf("relay credentials: relay %q address %q: want host:port", s.Name, a)
			}
		}
		c.Servers = append(c.Servers, Server{Name: s.Name, UDP: s.UDP, UDPAlt: s.UDPAlt, TLS: s.TLS, Password: s.Password})
	}
	return c, nil
}
