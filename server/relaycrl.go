package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/big"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/relay"
)

// relayCRL keeps a standalone relay's view of revocations: the CA's CRL,
// fetched with the relay's server certificate (--ca-url, every DocFetch)
// and verified as agents verify it (certs.VerifyCRL: signed by the
// intermediate that issued the relay's own certificate, under the pinned
// root, never older than the CRL held). The relay then refuses credentials
// issued against a revoked certificate and ends their allocations, so a
// revoked device loses a standalone relay at the next fetch, not only when
// its credential expires.
type relayCRL struct {
	roots *certs.Roots
	cert  func() *tls.Certificate
	relay *relay.Relay
	now   func() time.Time
	log   *slog.Logger
	held  *certs.CRL
}

// offer takes a CRL fetched from the CA (other documents are ignored).
func (c *relayCRL) offer(kind wire.DocKind, der []byte) error {
	if kind != wire.DocCRL {
		return nil
	}
	var inter []*x509.Certificate
	if tc := c.cert(); tc != nil && len(tc.Certificate) > 1 {
		for _, raw := range tc.Certificate[1:] {
			ic, err := x509.ParseCertificate(raw)
			if err != nil {
				return fmt.Errorf("parsing the relay certificate's chain: %w", err)
			}
			inter = append(inter, ic)
		}
	}
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	crl, err := certs.VerifyCRL(der, c.roots, inter, now(), c.held)
	if err != nil {
		return fmt.Errorf("verifying the CA's CRL: %w", err)
	}
	if crl == c.held {
		return nil
	}
	c.held = crl
	var serials []*big.Int
	for _, e := range crl.Revoked() {
		serials = append(serials, e.Serial)
	}
	n := c.relay.SetRevoked(serials)
	c.log.Info("CRL installed", "number", crl.Number, "entries", len(serials), "allocations_ended", n)
	return nil
}
