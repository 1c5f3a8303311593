package ca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/statedir"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/translog"
)

// CA is the running certificate authority.
type CA struct {
	stateDir string
	cfg      *Config
	roots    *certs.Roots
	root     *certs.KeyPair // certificate only at run time
	inter    *certs.KeyPair
	store    store.Store
	signer   *signer
	log      *slog.Logger
	now      func() time.Time

	rp                *relyingParty // nil without OIDC
	tlog              *translog.Log
	logVKey           string
	checkpointChanged atomic.Bool
	tpm               *tpmState
	logins            *logins
	nonces            *nonces     // nonce.go
	limits            *rateLimits // ratelimit.go
	relay             relayState  // relay.go
	metrics           *caMetrics  // metrics.go

	issueMu  sync.Mutex // serialises logged changes (recover.go)
	policyMu sync.Mutex // serialises policy publication
	crlMu    sync.Mutex // serialises CRL numbering and signing

	mu        sync.Mutex
	pol       *policyState // nil for a state directory from before policies
	crl       document     // none before the first CRL
	serverTLS *tls.Certificate

	onPolicy, onCRL, onCheckpoint listeners[[]byte]
	onRevoke, onReissue           listeners[certs.DeviceID]

	lock *statedir.Lock // the state directory, held until Close

	restored *RestoredState // restored and catching up: nothing is signed (restore.go)
}

// Options tune Open.
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time // for tests
}

// Open loads a state directory created by Init. The CA holds the
// directory until Close: a second server on it is refused, naming the
// first one's pid. It refuses databases that are missing, empty or
// truncated, saying how to restore them.
func Open(stateDir string, o Options) (_ *CA, err error) {
	lock, err := lockState(stateDir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.Unlock()
		}
	}()
	cfg, err := LoadConfig(stateDir)
	if err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	roots, err := LoadRoots(stateDir, cfg.TrustDomain)
	if err != nil {
		return nil, err
	}
	inter, err := loadKeyPair(stateDir, IntermediateCertFile, intermediateKeyFile)
	if err != nil {
		return nil, err
	}
	nc, err := newNonces()
	if err != nil {
		return nil, err
	}
	st, err := openStore(stateDir, cfg, roots.Certificates()[0])
	if err != nil {
		return nil, err
	}
	sg, err := newSigner(stateDir, &certs.KeyPair{Cert: roots.Certificates()[0]}, inter, cfg.CertBackdate)
	if err != nil {
		st.Close()
		return nil, err
	}
	c := &CA{
		stateDir: stateDir, cfg: cfg, roots: roots, root: &certs.KeyPair{Cert: roots.Certificates()[0]},
		inter: inter, store: st, signer: sg, log: o.Logger, now: o.Now, logins: newLogins(),
		nonces: nc, limits: newRateLimits(cfg.RateLimit.withDefaults()), lock: lock, metrics: newCAMetrics(),
	}
	if c.relay.master, err = loadRelayKey(stateDir); err != nil {
		c.Close()
		return nil, err
	}
	if c.tlog, c.logVKey, err = openLog(stateDir, cfg.TrustDomain); err != nil {
		c.Close()
		return nil, err
	}
	if c.tpm, err = loadTPM(stateDir, cfg); err != nil {
		c.Close()
		return nil, err
	}
	if c.restored, err = loadRestored(stateDir); err != nil {
		c.Close()
		return nil, err
	}
	if c.pol, err = loadPolicy(stateDir); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.recoverPolicy(); err != nil {
		c.Close()
		return nil, fmt.Errorf("recovering an interrupted policy publication: %w", err)
	}
	if c.restored != nil {
		c.log.Warn("restored: catching up: issuing nothing and publishing no CRL, log checkpoint or policy until certmesh-server catch-up",
			"backup_taken_at", c.restored.BackupTakenAt, "log_size", c.tlog.Size())
	}
	if c.pol != nil && c.tlog.Size() == 0 && c.restored == nil {
		// The starter policy, signed at init, is the log's first entry.
		if err := c.logAppend(context.Background(), translog.PolicyEntry(c.pol.doc.Version, c.pol.raw, c.pol.doc.SignedAt)); err != nil {
			c.Close()
			return nil, err
		}
	}
	// Before anything reads the database: finish or discard the change a
	// crash interrupted (recover.go).
	if _, err := c.recoverLocked(context.Background()); err != nil {
		c.Close()
		return nil, fmt.Errorf("recovering interrupted issuance: %w", err)
	}
	if err := c.refreshPolicyIfDue(context.Background()); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.RefreshCRL(context.Background()); err != nil {
		c.Close()
		return nil, err
	}
	if cfg.OIDC != nil {
		if c.rp, err = newRelyingParty(*cfg.OIDC, o.Logger, o.Now); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Close releases the databases.
func (c *CA) Close() error {
	var errs []error
	if c.tlog != nil {
		errs = append(errs, c.tlog.Close())
	}
	errs = append(errs, c.signer.close(), c.store.Close())
	// Only once the databases are closed may another server take them.
	errs = append(errs, c.lock.Unlock())
	return errors.Join(errs...)
}

// Config returns the loaded configuration.
func (c *CA) Config() *Config { return c.cfg }

// Roots returns the trust anchors.
func (c *CA) Roots() *certs.Roots { return c.roots }

// Intermediate returns the issuing CA certificate.
func (c *CA) Intermediate() *certs.KeyPair { return &certs.KeyPair{Cert: c.inter.Cert} }

// Store exposes the store to the server wiring (read-only use).
func (c *CA) Store() store.Store { return c.store }

// OnRevoke registers a function called after a device is revoked (the
// coordinator uses it to disconnect the device at once).
func (c *CA) OnRevoke(fn func(certs.DeviceID)) { c.onRevoke.add(fn) }

// bundleFor returns the wire bundle of a machine certificate.
func (c *CA) bundleFor(m *x509.Certificate) certs.WireBundle {
	return certs.Bundle{Machine: m, Intermediates: []*x509.Certificate{c.inter.Cert}}.Wire()
}
