package agent

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/backoff"
	"github.com/certmesh/certmesh/internal/wire"
)

// renewAt is when two thirds of a certificate's life are gone.
func renewAt(notBefore, notAfter time.Time) time.Time {
	return notBefore.Add(notAfter.Sub(notBefore) * 2 / 3)
}

// Bounds of the renewal schedule.
const (
	renewRetryMin = time.Second
	renewRetryMax = 5 * time.Minute
	// renewCallMax bounds one renewal attempt; on a short certificate it
	// is a tenth of the renewal margin, so that calls hanging on a dead
	// connection cannot eat the margin.
	renewCallMax = 30 * time.Second
	renewCallMin = 5 * time.Second
)

// renewTimeout is how long one renewal attempt of a certificate valid
// from notBefore to notAfter may take.
func renewTimeout(notBefore, notAfter time.Time) time.Duration {
	margin := notAfter.Sub(renewAt(notBefore, notAfter))
	return min(max(margin/10, renewCallMin), renewCallMax)
}

// renewRetry caps a backoff wait so that a failing renewal is tried
// several more times before the certificate expires.
func renewRetry(d time.Duration, untilExpiry time.Duration) time.Duration {
	if untilExpiry > 0 {
		d = min(d, untilExpiry/4)
	}
	return max(d, renewRetryMin/2)
}

// renewLoop renews the machine certificate at two thirds of its life and,
// on failure, retries with jittered exponential backoff, kept short enough
// to try several times before the certificate expires.
func (a *Agent) renewLoop(ctx context.Context) {
	bo := backoff.Backoff{Min: renewRetryMin, Max: renewRetryMax}
	var retryAt time.Time // after a failure: when to try again
	for {
		a.mu.Lock()
		self := a.self
		a.mu.Unlock()
		due := renewDue(self) // jittered per certificate (renewjitter.go)
		if !retryAt.IsZero() {
			due = retryAt
		}
		if wait := due.Sub(a.cfg.Now()); wait > 0 {
			// Read the wall clock again at least every RenewCheckInterval:
			// timers stop while a machine sleeps, its certificate does not.
			select {
			case <-ctx.Done():
				return
			case <-time.After(min(wait, a.cfg.RenewCheckInterval)):
			}
			continue
		}
		actx, cancel := context.WithTimeout(ctx, renewTimeout(self.NotBefore, self.NotAfter))
		err := a.renewOnce(actx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			bo.Reset()
			retryAt = time.Time{}
			continue
		}
		now := a.cfg.Now()
		retryAt = now.Add(renewRetry(bo.Next(), self.NotAfter.Sub(now)))
		a.cfg.Logger.Error("renewal failed, retrying", "err", err, "cert_not_after", self.NotAfter,
			"attempt", bo.Attempts(), "retry_at", retryAt)
	}
}

// renewOnce renews now and tells the coordinator. A certificate that
// expired (by our clock, or the server's: the handshake or the CA refuses
// it as expired) is renewed after expiry, with the device and WireGuard
// keys as proof.
func (a *Agent) renewOnce(ctx context.Context) error {
	a.renewMu.Lock()
	defer a.renewMu.Unlock()
	a.mu.Lock()
	self, certDER := a.self, a.enr.Cert.Bundle.Machine
	a.mu.Unlock()
	var resp wire.CertificateResponse
	var err error
	if a.cfg.Now().After(self.NotAfter) {
		resp, err = renewExpired(ctx, a.anonAPI, a.keys, certDER, a.asks())
	} else if resp, err = renew(ctx, a.caAPI, a.keys, a.asks()); refusedAsExpired(err) {
		a.cfg.Logger.Warn("the CA holds our certificate for expired (clock skew?): renewing after expiry", "err", err)
		resp, err = renewExpired(ctx, a.anonAPI, a.keys, certDER, a.asks())
	}
	if err != nil {
		return err
	}
	id, err := a.acceptRenewal(resp)
	if err != nil {
		return err
	}
	a.offerCAPolicy(resp.Policy)
	a.tlog.seed(resp.Inclusion)
	if err := a.fetchCRL(ctx); err != nil {
		a.cfg.Logger.Warn("fetching the CRL after renewal (the periodic fetch retries)", "err", err)
	}
	a.cfg.Logger.Info("certificate renewed", "serial", id.Serial, "not_after", id.NotAfter)
	a.serveRoutes()
	if err := a.coord.republish(ctx); err != nil {
		a.cfg.Logger.Warn("publishing renewed certificate", "err", err)
	}
	return nil
}

// acceptRenewal checks a renewed certificate, saves it and makes it ours.
func (a *Agent) acceptRenewal(resp wire.CertificateResponse) (certs.Identity, error) {
	b, id, err := checkOwnCertificate(resp, a.roots, a.keys, a.verifyOptions())
	if err != nil {
		return certs.Identity{}, err
	}
	enr := &enrollment{TrustDomain: a.roots.TrustDomain, Cert: resp}
	enr.Cert.Policy = nil // the caller offers it; the policy holder keeps it
	if err := saveEnrollment(a.cfg.StateDir, enr); err != nil {
		return certs.Identity{}, err
	}
	a.adopt(enr, b, id)
	return id, nil
}

// refusedAsExpired reports whether err is a refusal of our certificate as
// expired: a TLS certificate_expired alert, or the CA saying so.
func refusedAsExpired(err error) bool {
	var alert tls.AlertError
	if errors.As(err, &alert) && alert == tlsAlertCertificateExpired {
		return true
	}
	var se *ServerError
	return errors.As(err, &se) && se.Status == http.StatusForbidden && strings.Contains(se.Msg, string(certs.ReasonExpired))
}

// tlsAlertCertificateExpired is TLS alert 45, which crypto/tls sends for
// an expired (or not yet valid) client certificate.
const tlsAlertCertificateExpired tls.AlertError = 45

// renewExpired renews the expired certificate certDER without mTLS,
// proving possession of the device key (signing wire.DeviceProofMessage;
// a TPM key signs inside the TPM) and of the WireGuard key over a nonce.
func renewExpired(ctx context.Context, api *apiClient, k *keys, certDER []byte, asks wire.Asks) (wire.CertificateResponse, error) {
	var resp wire.CertificateResponse
	nonce, csr, proof, err := nonceProof(ctx, api, k, "renewing after expiry: getting a nonce")
	if err != nil {
		return resp, err
	}
	h := sha256.Sum256(wire.DeviceProofMessage(nonce, certDER, k.wg.Public()))
	sig, err := k.device.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		return resp, fmt.Errorf("signing with the device key: %w", err)
	}
	req := wire.RenewExpiredRequest{Certificate: certDER, CSR: csr, WireGuardKey: k.wg.Public(), Nonce: nonce, Proof: proof, DeviceProof: sig, Asks: asks}
	if err := api.call(ctx, http.MethodPost, wire.PathRenewExpired, req, &resp); err != nil {
		return resp, fmt.Errorf("renewing after expiry: %w", err)
	}
	return resp, nil
}

// RenewNow renews the machine certificate at once (normally the agent
// renews by itself at two thirds of its life).
func (a *Agent) RenewNow(ctx context.Context) error { return a.renewOnce(ctx) }
