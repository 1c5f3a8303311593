package ca

import (
	"crypto/tls"
	"fmt"
	"path/filepath"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// LoadServerCertificate reads the server TLS certificate from a state
// directory (used by a coordinator-only server that has no CA key).
func LoadServerCertificate(stateDir string) (*tls.Certificate, error) {
	kp, err := tls.LoadX509KeyPair(filepath.Join(stateDir, ServerCertFile), filepath.Join(stateDir, ServerKeyFile))
	if err != nil {
		return nil, fmt.Errorf("loading server TLS certificate: %w", err)
	}
	if err := checkKeyMode(filepath.Join(stateDir, ServerKeyFile)); err != nil {
		return nil, err
	}
	return &kp, nil
}

// GetCertificate returns the server TLS certificate, issuing a fresh one
// from the intermediate when two thirds of the current one's life are gone.
// It fits tls.Config.GetCertificate.
func (c *CA) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.serverTLS == nil {
		kp, err := LoadServerCertificate(c.stateDir)
		if err != nil {
			return nil, err
		}
		c.serverTLS = kp
	}
	leaf := c.serverTLS.Leaf
	if leaf != nil && c.now().Before(renewAt(leaf.NotBefore, leaf.NotAfter)) {
		return c.serverTLS, nil
	}
	kp, err := certs.NewServerCertificate(c.inter, c.cfg.TrustDomain, c.now())
	if err != nil {
		return nil, fmt.Errorf("renewing server TLS certificate: %w", err)
	}
	if err := writeServerPair(c.stateDir, kp, certs.EncodePEM(c.inter.Cert)); err != nil {
		return nil, fmt.Errorf("storing server TLS certificate: %w", err)
	}
	fresh, err := LoadServerCertificate(c.stateDir)
	if err != nil {
		return nil, err
	}
	c.serverTLS = fresh
	c.log.Info("server TLS certificate renewed", "not_after", kp.Cert.NotAfter)
	return c.serverTLS, nil
}

// renewAt is when two thirds of a validity window have passed.
func renewAt(notBefore, notAfter time.Time) time.Time {
	return notBefore.Add(notAfter.Sub(notBefore) * 2 / 3)
}
