package relayc

import (
	"crypto/tls"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/tlsclient"
	"github.com/certmesh/certmesh/internal/wire"
)

// TLSConfig is the configuration that verifies a relay reached over TLS:
// the same as for the CA and the coordinator (internal/tlsclient), TLS 1.3
// and a certificate for server.<trust domain> chaining to the pinned roots,
// whatever address was dialled, offering the ALPN protocol of TURN
// (wire.RelayALPN, which an embedded relay needs to be told apart from
// HTTPS on the server's port). The agent presents no certificate: the relay
// admits by TURN credentials.
func TLSConfig(roots *certs.Roots, now func() time.Time) *tls.Config {
	c := tlsclient.Config(roots, now, nil)
	c.NextProtos = []string{wire.RelayALPN}
	return c
}
