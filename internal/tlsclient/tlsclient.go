// Package tlsclient builds the one TLS client configuration of every
// certmesh client of the CA and coordinator (agents, a coordinator renewing
// its certificate at the CA, auditors): TLS 1.3, and the server verified
// against the pinned roots under the name server.<trust domain>, whatever
// address was dialled.
package tlsclient

import (
	"crypto/tls"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// Config verifies the server against roots at the time now (nil: the
// system clock). With cert set, the client presents the certificate cert
// returns when the server asks for one (it must not return nil: an empty
// &tls.Certificate{} presents none); without it, the client presents none.
func Config(roots *certs.Roots, now func() time.Time, cert func() *tls.Certificate) *tls.Config {
	c := &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    roots.Pool(),
		ServerName: certs.ServerName(roots.TrustDomain),
		Time:       now,
	}
	if cert != nil {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert(), nil }
	}
	return c
}
