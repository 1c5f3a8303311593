package ca

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/certmesh/certmesh/internal/atomicfile"
	"github.com/certmesh/certmesh/policy"
	"github.com/certmesh/certmesh/translog"
)

// policyNextFile holds a newly signed policy version between its log
// append and its installation as PolicyFile: the intent of a publication
// (the log must never hold a version the CA then signs again differently).
const policyNextFile = PolicyFile + ".next"

// publishLogged logs and installs a newly signed policy version: written
// ahead to policyNextFile, appended to the log, then installed.
func (c *CA) publishLogged(ctx context.Context, st *policyState, doc *policy.SignedPolicy, raw []byte) (*policyState, error) {
	next := filepath.Join(c.stateDir, policyNextFile)
	if err := atStep(stepIntent); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(next, raw, 0o644); err != nil {
		return nil, fmt.Errorf("storing policy version %d: %w", doc.Version, err)
	}
	err := atStep(stepLog)
	if err == nil {
		err = c.logAppend(ctx, translog.PolicyEntry(doc.Version, raw, doc.SignedAt))
	}
	if errors.Is(err, errCrash) {
		return nil, err
	}
	if err != nil {
		if logged, lerr := c.policyLogged(doc, raw); lerr != nil || !logged {
			os.Remove(next)
			return nil, err
		}
	}
	c.publishCheckpoint()
	// The version is logged: it must be installed. A failed attempt is
	// tried once more (as resolve does for an issuance), then left to Open.
	err = atStep(stepApply)
	if errors.Is(err, errCrash) {
		return nil, err
	}
	ps, err := c.installPolicy(st.signer, doc, raw)
	if err != nil {
		if ps, err = c.installPolicy(st.signer, doc, raw); err != nil {
			return nil, err // policyNextFile stays: Open installs it
		}
	}
	os.Remove(next)
	return ps, atStep(stepDone)
}

// policyLogged reports whether the log holds this signed policy document.
func (c *CA) policyLogged(doc *policy.SignedPolicy, raw []byte) (bool, error) {
	h, err := translog.PolicyEntry(doc.Version, raw, doc.SignedAt).LeafHash()
	if err != nil {
		return false, err
	}
	_, ok, err := c.tlog.Lookup(h)
	return ok, err
}

// recoverPolicy finishes a publication a crash interrupted: a version the
// log holds is installed, one it does not is discarded.
func (c *CA) recoverPolicy() error {
	next := filepath.Join(c.stateDir, policyNextFile)
	raw, err := os.ReadFile(next)
	if errors.Is(err, os.ErrNotExist) || c.pol == nil {
		return nil
	} else if err != nil {
		return fmt.Errorf("reading %s: %w", next, err)
	}
	doc, err := policy.ParseSignedPolicy(raw)
	logged := false
	if err == nil {
		logged, err = c.policyLogged(doc, raw)
	}
	if err != nil || !logged {
		c.log.Warn("discarded an interrupted policy publication: the transparency log never recorded it", "file", next, "err", err)
		return os.Remove(next)
	}
	if _, err := c.installPolicy(c.pol.signer, doc, raw); err != nil {
		return err
	}
	c.log.Warn("completed an interrupted policy publication the transparency log had recorded", "version", doc.Version)
	return os.Remove(next)
}
