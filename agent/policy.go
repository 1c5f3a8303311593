package agent

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/certmesh/certmesh/agent/filter"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/atomicfile"
	"github.com/certmesh/certmesh/policy"
)

// policyFile keeps the last good signed policy across restarts.
const policyFile = "policy.json"

// PolicyStatus is the access policy the agent enforces.
type PolicyStatus struct {
	// Version is 0 while no valid policy is held: all inbound mesh
	// traffic is dropped then.
	Version  uint64    `json:"version"`
	Signer   string    `json:"signer,omitempty"`
	SignedAt time.Time `json:"signed_at,omitzero"`
	// Refused is the last policy document refused, and why.
	Refused   string    `json:"refused,omitempty"`
	RefusedAt time.Time `json:"refused_at,omitzero"`
	// Rules names the rules, in order (counters refer to them by index).
	Rules    []string        `json:"rules,omitempty"`
	Counters filter.Counters `json:"counters"`
}

// policyHolder verifies the signed policies the coordinator relays, keeps
// the newest good one (on disk too), and installs it in the packet filter
// for this node's identity.
type policyHolder struct {
	roots    *certs.Roots
	stateDir string
	log      *slog.Logger
	now      func() time.Time
	filter   *filter.Device
	self     func() certs.Identity

	mu        sync.Mutex
	doc       *policy.SignedPolicy
	compiled  *policy.Compiled
	refused   string
	refusedAt time.Time
}

// load restores the last good policy from the state directory, verifying
// it again (a tampered file is refused like a tampered relay).
func (h *policyHolder) load() {
	data, err := os.ReadFile(filepath.Join(h.stateDir, policyFile))
	if errors.Is(err, os.ErrNotExist) {
		h.log.Warn("no access policy yet: all inbound mesh traffic is dropped until the coordinator relays one")
		return
	}
	if err == nil {
		err = h.offer(data, false)
	}
	if err != nil {
		h.log.Error("stored access policy refused: all inbound mesh traffic is dropped until a valid one arrives", "err", err)
	}
}

// offer verifies a signed policy document and installs it if it is newer
// than the one held. It keeps the current policy on any refusal.
func (h *policyHolder) offer(data []byte, save bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var current uint64
	if h.doc != nil {
		current = h.doc.Version
	}
	doc, err := policy.ParseSignedPolicy(data)
	var pol *policy.Policy
	if err == nil {
		if doc.Version == current && h.doc != nil && bytes.Equal(doc.Signature, h.doc.Signature) &&
			bytes.Equal(doc.SignedMessage(), h.doc.SignedMessage()) && bytes.Equal(doc.Policy, h.doc.Policy) {
			return nil // the one we hold, relayed again
		}
		pol, err = policy.Verify(doc, h.roots, h.now(), current)
	}
	if err != nil {
		h.refused, h.refusedAt = err.Error(), h.now()
		h.log.Warn("policy refused, keeping the current one", "current_version", current, "reason", policy.ReasonOf(err), "err", err)
		return err
	}
	if save {
		if err := atomicfile.WriteFile(filepath.Join(h.stateDir, policyFile), data, 0o644); err != nil {
			return fmt.Errorf("saving policy: %w", err)
		}
	}
	h.doc, h.compiled = doc, pol.Compile()
	h.installLocked()
	h.log.Info("policy installed", "version", doc.Version, "signed_at", doc.SignedAt, "rules", h.compiled.RuleCount())
	return nil
}

// installLocked gives the filter the policy as it applies to this node.
func (h *policyHolder) installLocked() {
	if h.compiled == nil || h.filter == nil {
		return
	}
	node := h.compiled.ForNode(h.self())
	h.filter.SetDecider(node.DecideFunc())
	h.filter.Revalidate()
}

// reinstall re-applies the policy after this node's identity changed.
func (h *policyHolder) reinstall() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.installLocked()
}

func (h *policyHolder) status() PolicyStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := PolicyStatus{Refused: h.refused, RefusedAt: h.refusedAt}
	if h.doc != nil {
		st.Version, st.SignedAt = h.doc.Version, h.doc.SignedAt
		if c, err := h.doc.Signer(); err == nil {
			st.Signer = c.Subject.CommonName
		}
		st.Rules = h.compiled.RuleNames()
	}
	if h.filter != nil {
		st.Counters = h.filter.Counters()
	}
	return st
}
