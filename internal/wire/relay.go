package wire

import "time"

// PathRelayCredentials is where an enrolled device asks the CA, over mTLS
// with its current machine certificate, for short-lived TURN credentials
// (POST, body RelayCredentialsRequest) to the relays it may use.
const PathRelayCredentials = "/v1/relay/credentials"

// RelayALPN is the ALPN protocol of TURN over TLS (RFC 7443): a relay
// answers it on its TLS port (the server's HTTPS port when embedded).
const RelayALPN = "stun.turn"

// MaxRelays bounds the relays in one credentials answer.
const MaxRelays = 16

// RelayCredentialsRequest asks for relay credentials; it has no fields
// yet (the device is the one of the mTLS certificate). Send {}.
type RelayCredentialsRequest struct{}

// RelayCredentialsResponse is the CA's answer: one TURN username for every
// relay (it names the device and the expiry), the realm, and per relay its
// addresses and the password that relay checks. After Expires every relay
// refuses the username and stops relaying for allocations made with it;
// ask again before (at about two thirds of the lifetime) and allocate
// anew with the fresh credentials.
type RelayCredentialsResponse struct {
	Username string        `json:"username"`
	Realm    string        `json:"realm"`
	Expires  time.Time     `json:"expires"`
	Relays   []RelayServer `json:"relays"`
}

// RelayServer is one TURN relay and the password for it (passwords differ
// per relay, so one relay cannot admit anyone to another). Addresses are
// host:port; an empty one means the relay does not serve that transport.
type RelayServer struct {
	Name string `json:"name"`
	// UDP serves TURN (RFC 8656) and STUN Binding over UDP.
	UDP string `json:"udp,omitempty"`
	// UDPAlt answers STUN (and TURN) on a second port of the same host:
	// comparing the mapped addresses seen from UDP and UDPAlt tells an
	// endpoint-independent NAT mapping from one that is not.
	UDPAlt string `json:"udp_alt,omitempty"`
	// TLS serves TURN over TLS on TCP (ALPN RelayALPN); its certificate is
	// the server certificate (server.<trust domain>) under the pinned root.
	TLS      string `json:"tls,omitempty"`
	Password string `json:"password"`
}
