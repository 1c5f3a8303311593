package ca

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/certmesh/certmesh/policy"
)

// policyValidity is how long each signing of the policy is current.
func (c *CA) policyValidity() time.Duration {
	if c.cfg.PolicyValidity > 0 {
		return time.Duration(c.cfg.PolicyValidity)
	}
	return policy.DefaultValidity
}

// RefreshPolicy signs the current policy again: the same version and
// source, a new signed-at and valid-until one validity away. Agents take
// it as a re-signing of the version they hold (policy.IsResigning); no new
// version is logged, the policy is the one the log holds.
func (c *CA) RefreshPolicy(ctx context.Context) error {
	c.policyMu.Lock() // not while a publication signs the next version
	defer c.policyMu.Unlock()
	return c.refreshPolicyLocked(ctx, false)
}

// refreshPolicyIfDue signs the current policy again if it is past half of
// its validity (or of the first format, without valid-until).
func (c *CA) refreshPolicyIfDue(ctx context.Context) error {
	c.policyMu.Lock()
	defer c.policyMu.Unlock()
	return c.refreshPolicyLocked(ctx, true)
}

func (c *CA) refreshPolicyLocked(_ context.Context, onlyIfDue bool) error {
	c.mu.Lock()
	st := c.pol
	c.mu.Unlock()
	if st == nil {
		return nil
	}
	now, validity := c.now(), c.policyValidity()
	if onlyIfDue && !st.doc.ValidUntil.IsZero() && st.doc.ValidUntil.Sub(now) > validity/2 {
		return nil
	}
	doc, err := policy.SignValidFor(st.doc.Version, st.doc.Policy, st.signer.Key, []*x509.Certificate{st.signer.Cert}, now, validity)
	if err != nil {
		return fmt.Errorf("signing policy version %d again: %w", st.doc.Version, err)
	}
	raw, err := doc.Marshal()
	if err != nil {
		return err
	}
	if _, err := c.installPolicy(st.signer, doc, raw); err != nil {
		return err
	}
	c.log.Debug("policy signed again", "version", doc.Version, "valid_until", doc.ValidUntil)
	return nil
}

// RunPolicy signs the current policy again whenever it is past half of its
// validity (checked at a quarter of it), until ctx ends.
func (c *CA) RunPolicy(ctx context.Context) {
	c.every(ctx, c.policyValidity()/4, "signing the policy again", c.RunPolicyOnce)
}

// RunPolicyOnce is one tick of RunPolicy: it signs the current policy
// again if it is past half of its validity.
func (c *CA) RunPolicyOnce(ctx context.Context) error { return c.refreshPolicyIfDue(ctx) }
