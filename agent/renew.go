package agent

import (
	"context"
	"time"

	"github.com/certmesh/certmesh/internal/backoff"
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
	failing := false
	for {
		a.mu.Lock()
		self := a.self
		a.mu.Unlock()
		wait := renewAt(self.NotBefore, self.NotAfter).Sub(a.cfg.Now())
		if failing {
			wait = renewRetry(bo.Next(), self.NotAfter.Sub(a.cfg.Now()))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(wait, 0)):
		}
		actx, cancel := context.WithTimeout(ctx, renewTimeout(self.NotBefore, self.NotAfter))
		err := a.renewOnce(actx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if failing = err != nil; !failing {
			bo.Reset()
			continue
		}
		a.cfg.Logger.Error("renewal failed, retrying", "err", err, "cert_not_after", self.NotAfter, "attempt", bo.Attempts()+1)
	}
}

// renewOnce renews now and tells the coordinator.
func (a *Agent) renewOnce(ctx context.Context) error {
	resp, err := renew(ctx, a.caAPI, a.keys)
	if err != nil {
		return err
	}
	b, id, err := checkOwnCertificate(resp, a.roots, a.keys, a.cfg.Now())
	if err != nil {
		return err
	}
	enr := &enrollment{TrustDomain: a.roots.TrustDomain, Cert: resp}
	if err := saveEnrollment(a.cfg.StateDir, enr); err != nil {
		return err
	}
	a.adopt(enr, b, id)
	a.seedWitness(resp.Inclusion)
	a.fetchCRL(ctx)
	a.cfg.Logger.Info("certificate renewed", "serial", id.Serial, "not_after", id.NotAfter)
	if err := a.coord.republish(ctx); err != nil {
		a.cfg.Logger.Warn("publishing renewed certificate", "err", err)
	}
	return nil
}

// RenewNow renews the machine certificate at once (normally the agent
// renews by itself at two thirds of its life).
func (a *Agent) RenewNow(ctx context.Context) error { return a.renewOnce(ctx) }
