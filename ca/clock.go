package ca

import (
	"net/http"
	"time"
)

// DefaultCertBackdate is how long before its issuance a certificate
// starts, unless cert_backdate says otherwise: an agent whose clock is up
// to this far behind the CA's accepts a certificate the CA just issued.
const DefaultCertBackdate = 5 * time.Minute

// The range of cert_backdate.
const (
	minCertBackdate = time.Minute
	maxCertBackdate = time.Hour
)

// certStart is the NotBefore of a certificate issued at issued for life:
// the configured backdate (cert_backdate, default DefaultCertBackdate),
// cut to half of life so that a short-lived certificate's renewal time
// (two thirds of its validity) still falls after its issuance.
func certStart(backdate Duration, issued time.Time, life time.Duration) time.Time {
	return issued.Add(-min(backdateOf(backdate), life/2))
}

// backdateOf is cert_backdate, or DefaultCertBackdate when it is not set.
// CRLs start this far back too, so that an agent whose clock is behind
// accepts a fresh one as it accepts a fresh certificate.
func backdateOf(backdate Duration) time.Duration {
	if backdate == 0 {
		return DefaultCertBackdate
	}
	return time.Duration(backdate)
}

// dated answers every request with the CA's clock (c.now) in the HTTP
// Date header, which net/http keeps when a handler set it. Agents measure
// their clock against it and say when it is too far off (certmesh status).
func (c *CA) dated(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", c.now().UTC().Format(http.TimeFormat))
		h.ServeHTTP(w, r)
	})
}
