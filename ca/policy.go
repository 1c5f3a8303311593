package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/atomicfile"
	"github.com/certmesh/certmesh/policy"
)

// Files of the access policy in the state directory.
const (
	PolicySignerCertFile = "policy-signer.crt"
	policySignerKeyFile  = "policy-signer.key"
	// PolicyFile holds the current signed policy document (JSON).
	PolicyFile = "policy.json"
)

// initPolicy creates the policy-signing certificate (signed by the root,
// its own key and extended key usage; the intermediate that issues leaves
// cannot sign policy) and publishes the starter policy as version 1.
func initPolicy(stateDir string, root *certs.KeyPair, td certs.TrustDomain, now time.Time) error {
	signer, err := policy.NewPolicySigningCertificate(root, td, now)
	if err != nil {
		return err
	}
	if err := writeCert(stateDir, PolicySignerCertFile, signer); err != nil {
		return err
	}
	if err := writeKey(stateDir, policySignerKeyFile, signer.Key); err != nil {
		return err
	}
	doc, err := policy.Sign(1, policy.Starter(td), signer.Key, []*x509.Certificate{signer.Cert}, now) // Open signs it again when due
	if err != nil {
		return fmt.Errorf("signing the starter policy: %w", err)
	}
	return writePolicyDoc(stateDir, doc)
}

func writePolicyDoc(stateDir string, doc *policy.SignedPolicy) error {
	data, err := doc.Marshal()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(stateDir, PolicyFile), data, 0o644)
}

// policyState is the CA's current policy and its signer.
type policyState struct {
	signer *certs.KeyPair
	doc    *policy.SignedPolicy
	document
}

// loadPolicy reads the signer and the current document (if the state
// directory has them).
func loadPolicy(stateDir string) (*policyState, error) {
	if _, err := os.Stat(filepath.Join(stateDir, PolicySignerCertFile)); errors.Is(err, os.ErrNotExist) {
		return nil, nil // a state directory from before policies
	}
	signer, err := loadKeyPair(stateDir, PolicySignerCertFile, policySignerKeyFile)
	if err != nil {
		return nil, err
	}
	doc, raw, err := readParsed(filepath.Join(stateDir, PolicyFile), "current policy", policy.ParseSignedPolicy)
	if err != nil {
		return nil, err
	}
	return &policyState{signer: signer, doc: doc, document: newDocument(raw)}, nil
}

// Policy returns the current signed policy document (nil if none).
func (c *CA) Policy() []byte { return c.policyDoc().raw }

// policyDoc is the current signed policy document (none for a state
// directory from before policies).
func (c *CA) policyDoc() document {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pol == nil {
		return document{}
	}
	return c.pol.document
}

// PolicyInfo describes the current policy.
type PolicyInfo struct {
	Version    uint64    `json:"version"`
	SignedAt   time.Time `json:"signed_at"`
	ValidUntil time.Time `json:"valid_until"`
	Signer     string    `json:"signer"`
	Source     string    `json:"source"`
}

// CurrentPolicy describes the current policy.
func (c *CA) CurrentPolicy() (PolicyInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pol == nil {
		return PolicyInfo{}, refuse(CodeNotFound, "this CA has no policy signer (state directory from an older version)")
	}
	return c.pol.info(), nil
}

// OnPolicy registers a function called with every newly published signed
// policy document (the coordinator relays it).
func (c *CA) OnPolicy(fn func(doc []byte)) { c.onPolicy.add(fn) }

// PublishPolicy checks src (syntax, references, its own tests), signs it
// as the next version and publishes it.
func (c *CA) PublishPolicy(ctx context.Context, src []byte) (PolicyInfo, error) {
	if err := c.catchingUp(); err != nil {
		return PolicyInfo{}, err
	}
	c.policyMu.Lock() // one publication at a time: versions never repeat
	defer c.policyMu.Unlock()
	c.mu.Lock()
	st := c.pol
	c.mu.Unlock()
	if st == nil {
		return PolicyInfo{}, refuse(CodeNotFound, "this CA has no policy signer (state directory from an older version)")
	}
	if _, err := policy.Parse(src); err != nil {
		return PolicyInfo{}, refuseErr(CodeBadRequest, err, "policy")
	}
	doc, err := policy.SignValidFor(st.doc.Version+1, src, st.signer.Key, []*x509.Certificate{st.signer.Cert}, c.now(), c.policyValidity())
	if err != nil {
		return PolicyInfo{}, refuseErr(CodeBadRequest, err, "policy refused")
	}
	raw, err := doc.Marshal()
	if err != nil {
		return PolicyInfo{}, err
	}
	next, err := c.publishLogged(ctx, st, doc, raw)
	if err != nil {
		return PolicyInfo{}, err
	}
	c.log.Info("policy published", "version", doc.Version, "valid_until", doc.ValidUntil)
	return next.info(), nil
}

func (st *policyState) info() PolicyInfo {
	return PolicyInfo{Version: st.doc.Version, SignedAt: st.doc.SignedAt, ValidUntil: st.doc.ValidUntil,
		Signer: st.signer.Cert.Subject.CommonName, Source: string(st.doc.Policy)}
}

// installPolicy stores a newly signed document, makes it the current one
// and hands it to the listeners (the coordinator relays it).
func (c *CA) installPolicy(signer *certs.KeyPair, doc *policy.SignedPolicy, raw []byte) (*policyState, error) {
	if err := atomicfile.WriteFile(filepath.Join(c.stateDir, PolicyFile), raw, 0o644); err != nil {
		return nil, fmt.Errorf("storing policy: %w", err)
	}
	st := &policyState{signer: signer, doc: doc, document: newDocument(raw)}
	c.mu.Lock()
	c.pol = st
	c.mu.Unlock()
	c.onPolicy.call(raw)
	return st, nil
}
