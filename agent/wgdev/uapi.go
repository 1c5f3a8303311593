package wgdev

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/certmesh/certmesh/certs"
)

// uapiSet builds the text of a wireguard-go IpcSet ("set=1") request.
// See https://www.wireguard.com/xplatform/#configuration-protocol.
//
// It deliberately has no way to emit private_key or preshared_key lines: the
// private key is handed to wireguard-go directly (Device.SetPrivateKey), so
// the text built here never holds a secret.
type uapiSet struct {
	b strings.Builder
}

func (u *uapiSet) line(key, value string) {
	u.b.WriteString(key)
	u.b.WriteByte('=')
	u.b.WriteString(value)
	u.b.WriteByte('\n')
}

// listenPort sets the device's UDP port (device section, before any peer).
func (u *uapiSet) listenPort(port int) { u.line("listen_port", strconv.Itoa(port)) }

// peer starts the section of the peer with the given public key, creating
// the peer if needed.
func (u *uapiSet) peer(k certs.WireGuardKey) { u.line("public_key", k.Hex()) }

// remove removes the current peer.
func (u *uapiSet) remove() { u.line("remove", "true") }

// replaceAllowedIPs drops the current peer's allowed IPs before the
// allowedIP lines that follow.
func (u *uapiSet) replaceAllowedIPs() { u.line("replace_allowed_ips", "true") }

// allowedIP adds an allowed IP to the current peer.
func (u *uapiSet) allowedIP(p netip.Prefix) { u.line("allowed_ip", p.Masked().String()) }

// endpoint sets the current peer's endpoint.
func (u *uapiSet) endpoint(ap netip.AddrPort) {
	u.line("endpoint", netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String())
}

// persistentKeepalive sets the current peer's keepalive interval (0 = off).
func (u *uapiSet) persistentKeepalive(secs int) {
	u.line("persistent_keepalive_interval", strconv.Itoa(secs))
}

// String returns the request text.
func (u *uapiSet) String() string { return u.b.String() }
