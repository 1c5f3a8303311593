package wgdev

import (
	"errors"
	"fmt"
	"strings"

	"github.com/certmesh/certmesh/certs"
)

// SetEndpoint points a configured peer at an endpoint in the text form the
// device's bind parses: "addr:port", or a wrapping bind's form (WrapBind;
// agent/path's "relay:<n>:<addr:port>"). The peer's session is kept. An
// unknown peer is an error: SetEndpoint never creates one.
func (d *Device) SetEndpoint(k certs.WireGuardKey, endpoint string) error {
	if endpoint == "" || strings.ContainsAny(endpoint, "\n=") {
		// One line of the UAPI text: a newline would start another.
		return fmt.Errorf("setting WireGuard endpoint of %v: malformed endpoint %q", k, endpoint)
	}
	var u uapiSet
	u.peer(k)
	u.line("update_only", "true")
	u.line("endpoint", endpoint)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if d.wg.LookupPeer([32]byte(k)) == nil {
		return fmt.Errorf("setting WireGuard endpoint of %v: %w", k, errNoPeer)
	}
	if err := d.wg.IpcSet(u.String()); err != nil {
		return fmt.Errorf("setting WireGuard endpoint of %v: %w", k, err)
	}
	return nil
}

var errNoPeer = errors.New("no such peer")
