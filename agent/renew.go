package agent

import (
	"context"
	"time"
)

// renewAt is when two thirds of a certificate's life are gone.
func renewAt(notBefore, notAfter time.Time) time.Time {
	return notBefore.Add(notAfter.Sub(notBefore) * 2 / 3)
}

// renewLoop renews the machine certificate at two thirds of its life,
// retrying every 30s (or sooner near expiry) on failure.
func (a *Agent) renewLoop(ctx context.Context) {
	for {
		a.mu.Lock()
		self := a.self
		a.mu.Unlock()
		wait := renewAt(self.NotBefore, self.NotAfter).Sub(a.cfg.Now())
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(wait, 0)):
		}
		if err := a.renewOnce(ctx); err != nil {
			a.cfg.Logger.Error("renewal failed, retrying", "err", err, "cert_not_after", self.NotAfter)
			retry := min(30*time.Second, max(time.Until(self.NotAfter)/4, time.Second))
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
		}
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
