package certs

import (
	"crypto/x509"
	"fmt"
	"time"
)

// MaxNotBeforeSkew bounds VerifyOptions.NotBeforeSkew.
const MaxNotBeforeSkew = time.Hour

// VerifyOptions are the clock parameters of [VerifyWith].
type VerifyOptions struct {
	// Now is the verifier's clock.
	Now time.Time
	// NotBeforeSkew tolerates a verifier whose clock is behind the
	// issuer's: a certificate (the leaf, a CA certificate of the bundle, a
	// root) whose NotBefore is at most this far after Now counts as valid.
	// It applies to NotBefore only and never extends a NotAfter: the leaf
	// and its chain are checked at the latest such NotBefore, a time at or
	// after Now, so a certificate expired at Now stays expired (one that
	// expires within the skew may be refused early, never accepted late).
	// Between 0 (strict, as Verify) and MaxNotBeforeSkew.
	NotBeforeSkew time.Duration
}

func (o VerifyOptions) check() error {
	if o.Now.IsZero() {
		return fmt.Errorf("certs: VerifyOptions.Now is not set")
	}
	if o.NotBeforeSkew < 0 || o.NotBeforeSkew > MaxNotBeforeSkew {
		return fmt.Errorf("certs: NotBeforeSkew %s is outside 0..%s", o.NotBeforeSkew, MaxNotBeforeSkew)
	}
	return nil
}

// checkTime is when leaf and its chain are checked: Now, or the latest
// NotBefore after Now but within NotBeforeSkew of it among leaf, the
// bundle's CA certificates and the roots. A NotBefore beyond the skew is
// left out, so that certificate is refused as not yet valid. Whatever the
// bundle carries, the result lies in [Now, Now+NotBeforeSkew].
func (o VerifyOptions) checkTime(leaf *x509.Certificate, inters, roots []*x509.Certificate) time.Time {
	at := o.Now
	if o.NotBeforeSkew <= 0 {
		return at
	}
	limit := o.Now.Add(o.NotBeforeSkew)
	consider := func(c *x509.Certificate) {
		if c.NotBefore.After(at) && !c.NotBefore.After(limit) {
			at = c.NotBefore
		}
	}
	consider(leaf)
	for _, c := range inters {
		consider(c)
	}
	for _, c := range roots {
		consider(c)
	}
	return at
}

// tolerated says, for a not-yet-valid rejection, what skew was allowed.
func (o VerifyOptions) tolerated() string {
	if o.NotBeforeSkew <= 0 {
		return " (no clock skew tolerated)"
	}
	return fmt.Sprintf(" (clock skew tolerated: %s)", o.NotBeforeSkew)
}
