package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/certmesh/certmesh/agent/filter"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/atomicfile"
	"github.com/certmesh/certmesh/policy"
)

// Files of the policy in the state directory: the last good signed policy,
// and the highest version ever installed (kept apart, so that losing or
// restoring an old policy.json cannot lower it).
const (
	policyFile        = "policy.json"
	policyVersionFile = "policy-version.json"
)

// ReasonPolicyStale: a new peer refused because the policy held is past
// its valid-until and the agent runs with --policy-stale refuse-new.
const ReasonPolicyStale certs.Reason = "policy-stale"

// PolicyStatus is the access policy the agent enforces.
type PolicyStatus struct {
	// Version is 0 while no valid policy is held: all inbound mesh
	// traffic is dropped then.
	Version    uint64    `json:"version"`
	Signer     string    `json:"signer,omitempty"`
	SignedAt   time.Time `json:"signed_at,omitzero"`
	ValidUntil time.Time `json:"valid_until,omitzero"`
	// HighestVersion is the highest version ever installed (persisted):
	// no lower one is accepted, from the coordinator or the CA.
	HighestVersion uint64 `json:"highest_version"`
	// Stale: the policy held is past its valid-until (neither the CA nor
	// the coordinator delivered a newer signing); StalePolicy says what the
	// agent does then.
	Stale       bool           `json:"stale"`
	StalePolicy DegradedPolicy `json:"stale_policy"`
	// Refused is the last policy document refused, and why.
	Refused   string    `json:"refused,omitempty"`
	RefusedAt time.Time `json:"refused_at,omitzero"`
	// Rules names the rules, in order (counters refer to them by index).
	Rules    []string        `json:"rules,omitempty"`
	Counters filter.Counters `json:"counters"`
}

// policyHolder verifies the signed policies the coordinator relays and the
// CA serves, keeps the newest good one (on disk too), and installs it in
// the packet filter for this node's identity.
type policyHolder struct {
	roots       *certs.Roots
	stateDir    string
	log         *slog.Logger
	now         func() time.Time
	filter      *filter.Device
	self        func() certs.Identity
	stalePolicy DegradedPolicy

	// validUntil is the held document's ValidUntil (Unix seconds, 0 for
	// none), read without the lock by the peer manager (stale).
	validUntil atomic.Int64

	mu        sync.Mutex
	doc       *policy.SignedPolicy
	raw       []byte // doc's wire form, as received
	compiled  *policy.Compiled
	highest   uint64 // persisted in policyVersionFile
	refused   string
	refusedAt time.Time
	wasStale  bool
}

type policyVersionState struct {
	Highest uint64 `json:"highest_version"`
}

// load restores the highest version seen and the last good policy from the
// state directory. The stored document is verified again (a tampered file
// is refused like a tampered relay) as of its signing time: one that went
// past its valid-until while the agent was down is still the newest the
// agent knows, and is enforced, stale, until a newer signing arrives.
func (h *policyHolder) load() error {
	data, err := os.ReadFile(filepath.Join(h.stateDir, policyVersionFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("reading %s: %w", policyVersionFile, err)
	default:
		var st policyVersionState
		if err := json.Unmarshal(data, &st); err != nil || st.Highest == 0 {
			return fmt.Errorf("%s in %s is corrupt (%d bytes): it holds the highest policy version this agent installed, "+
				"so that no older policy is accepted again; restore it, or remove it to accept the CA's current policy again", policyVersionFile, h.stateDir, len(data))
		}
		h.highest = st.Highest
	}
	data, err = os.ReadFile(filepath.Join(h.stateDir, policyFile))
	if errors.Is(err, os.ErrNotExist) {
		h.log.Warn("no access policy yet: all inbound mesh traffic is dropped until the CA or the coordinator delivers one", "highest_version", h.highest)
		return nil
	}
	if err == nil {
		err = h.offer(data, false)
	}
	if err != nil {
		h.log.Error("stored access policy refused: all inbound mesh traffic is dropped until a valid one arrives", "err", err)
	}
	return nil
}

// offer verifies a signed policy document and installs it if it is newer
// than the one held: a higher version, or a newer signing of the version
// held (policy.IsResigning). It refuses a version below the highest ever
// installed and a document past its valid-until, and keeps the current
// policy on any refusal. save is false only for the document read back at
// start.
func (h *policyHolder) offer(data []byte, save bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.doc != nil && bytes.Equal(data, h.raw) {
		return nil // the one we hold, relayed or served again
	}
	floor := h.highest
	if h.doc != nil {
		floor = max(floor, h.doc.Version)
	}
	doc, err := policy.ParseSignedPolicy(data)
	var pol *policy.Policy
	if err == nil {
		if h.doc != nil && doc.Version == h.doc.Version && bytes.Equal(doc.Policy, h.doc.Policy) && !doc.SignedAt.After(h.doc.SignedAt) {
			return nil // an earlier signing of the policy held: nothing newer
		}
		current, now := floor, h.now()
		if doc.Version == floor && floor > 0 && (h.doc == nil || policy.IsResigning(h.doc, doc)) {
			current = floor - 1 // the version held (or last held), signed again
		}
		if !save {
			now = doc.SignedAt
		}
		pol, err = policy.Verify(doc, h.roots, now, current)
	}
	if err != nil {
		h.refused, h.refusedAt = err.Error(), h.now()
		h.log.Warn("policy refused, keeping the current one", "current_version", floor, "reason", policy.ReasonOf(err), "err", err)
		return err
	}
	if save {
		if err := atomicfile.WriteFile(filepath.Join(h.stateDir, policyFile), data, 0o644); err != nil {
			return fmt.Errorf("saving policy: %w", err)
		}
	}
	if doc.Version > h.highest {
		// Durably, before the policy takes effect: a restart must not
		// forget it (nor accept an older version again).
		b, _ := json.Marshal(policyVersionState{Highest: doc.Version})
		if err := atomicfile.WriteFile(filepath.Join(h.stateDir, policyVersionFile), b, 0o644); err != nil {
			return fmt.Errorf("saving the highest policy version: %w", err)
		}
		h.highest = doc.Version
	}
	resigned := h.doc != nil && doc.Version == h.doc.Version
	h.doc, h.raw = doc, bytes.Clone(data)
	h.validUntil.Store(doc.ValidUntil.Unix())
	if resigned {
		h.log.Debug("policy signed again", "version", doc.Version, "valid_until", doc.ValidUntil)
		return nil // same source: the compiled policy stands
	}
	h.compiled = pol.Compile()
	h.installLocked()
	h.log.Info("policy installed", "version", doc.Version, "signed_at", doc.SignedAt, "valid_until", doc.ValidUntil, "rules", h.compiled.RuleCount())
	return nil
}

// held is the wire form of the document held (nil if none).
func (h *policyHolder) held() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.raw
}

// stale says, without taking the lock, why the policy held is past its
// valid-until ("" if it is not, or none is held).
func (h *policyHolder) stale() string {
	vu := h.validUntil.Load()
	if vu == 0 || !h.now().After(time.Unix(vu, 0)) {
		return ""
	}
	return fmt.Sprintf("the policy was valid until %s and no newer signing arrived", time.Unix(vu, 0).UTC().Format(time.RFC3339))
}

// sweep logs when the policy goes stale and when it is current again.
func (h *policyHolder) sweep() {
	why := h.stale()
	h.mu.Lock()
	changed := (why != "") != h.wasStale
	h.wasStale = why != ""
	h.mu.Unlock()
	switch {
	case changed && why != "":
		h.log.Warn("the policy is stale: "+why+" (the CA and the coordinator are not delivering it)", "policy", h.stalePolicy)
	case changed:
		h.log.Info("the policy is current again")
	}
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
	stale := h.stale() != ""
	h.mu.Lock()
	defer h.mu.Unlock()
	st := PolicyStatus{Refused: h.refused, RefusedAt: h.refusedAt, HighestVersion: h.highest, StalePolicy: h.stalePolicy, Stale: stale}
	if h.doc != nil {
		st.Version, st.SignedAt, st.ValidUntil = h.doc.Version, h.doc.SignedAt, h.doc.ValidUntil
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
