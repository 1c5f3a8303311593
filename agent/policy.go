package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
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
	// the coordinator delivered a newer signing). Refused is the last
	// policy document refused, and why.
	docStatus
	// Rules names the rules, in order (counters refer to them by index).
	Rules    []string        `json:"rules,omitempty"`
	Counters filter.Counters `json:"counters"`
}

// policyHolder is the access policy's kind of signed document: it
// verifies the signed policies the coordinator relays and the CA serves
// (through its docHolder: the newest good one is kept, on disk too) and
// installs the one held in the packet filter for this node's identity.
type policyHolder struct {
	roots       *certs.Roots
	stateDir    string
	log         *slog.Logger
	now         func() time.Time
	filter      *filter.Device
	stalePolicy DegradedPolicy
	docs        *docHolder[policyDoc]

	// validUntil is the held document's ValidUntil (Unix seconds, 0 for
	// none), read without the lock by the peer manager (stale).
	validUntil atomic.Int64

	mu       sync.Mutex
	self     certs.Identity // this node, as the policy applies to it
	compiled *policy.Compiled
	wasStale bool
	// onNode is given the policy as it applies to this node each time it
	// changes (the route stage's permit), under mu.
	onNode func(*policy.Node)
}

// policyDoc is a verified signed policy and what it says.
type policyDoc struct {
	signed *policy.SignedPolicy
	pol    *policy.Policy
}

func newPolicyHolder(roots *certs.Roots, stateDir string, f *filter.Device, self certs.Identity, stalePolicy DegradedPolicy,
	log *slog.Logger, now func() time.Time) *policyHolder {
	h := &policyHolder{roots: roots, stateDir: stateDir, log: log, now: now, filter: f, self: self, stalePolicy: stalePolicy}
	h.docs = newDocHolder("policy", docKind[policyDoc](h), now, filepath.Join(stateDir, policyVersionFile))
	return h
}

// load restores the highest version seen and the last good policy from the
// state directory. The stored document is verified again (a tampered file
// is refused like a tampered relay) as of its signing time: one that went
// past its valid-until while the agent was down is still the newest the
// agent knows, and is enforced, stale, until a newer signing arrives.
func (h *policyHolder) load() error {
	if err := h.docs.loadFloor(); err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(h.stateDir, policyFile))
	if errors.Is(err, os.ErrNotExist) {
		h.log.Warn("no access policy yet: all inbound mesh traffic is dropped until the CA or the coordinator delivers one", "highest_version", h.docs.state().highest)
		return nil
	}
	if err == nil {
		err = h.docs.offer(context.Background(), data, true)
	}
	if err != nil {
		h.log.Error("stored access policy refused: all inbound mesh traffic is dropped until a valid one arrives", "err", err)
	}
	return nil
}

// offer verifies a signed policy document and installs it if it is newer
// than the one held (see verify); a refusal is logged and shown in status.
func (h *policyHolder) offer(data []byte) error {
	err := h.docs.offer(context.Background(), data, false)
	if err != nil {
		h.log.Warn("policy refused, keeping the current one", "highest_version", h.docs.state().highest, "reason", policy.ReasonOf(err), "err", err)
	}
	return err
}

// verify accepts a higher version, or a newer signing of the version held
// (policy.IsResigning). It refuses a version below the highest ever
// installed and a document past its valid-until; a document read back at
// start is judged as of its own signing time.
func (h *policyHolder) verify(_ context.Context, data []byte, held *policyDoc, highest *big.Int, stored bool) (*policyDoc, error) {
	doc, err := policy.ParseSignedPolicy(data)
	if err != nil {
		return nil, err
	}
	var cur *policy.SignedPolicy
	if held != nil {
		cur = held.signed
	}
	if cur != nil && doc.Version == cur.Version && bytes.Equal(doc.Policy, cur.Policy) && !doc.SignedAt.After(cur.SignedAt) {
		return nil, nil // an earlier signing of the policy held: nothing newer
	}
	floor := highest.Uint64()
	current, now := floor, h.now()
	if doc.Version == floor && floor > 0 && (cur == nil || policy.IsResigning(cur, doc)) {
		current = floor - 1 // the version held (or last held), signed again
	}
	if stored {
		now = doc.SignedAt
	}
	pol, err := policy.Verify(doc, h.roots, now, current)
	if err != nil {
		return nil, err
	}
	return &policyDoc{signed: doc, pol: pol}, nil
}

func (h *policyHolder) version(d *policyDoc) *big.Int {
	return new(big.Int).SetUint64(d.signed.Version)
}

func (h *policyHolder) persist(_ *policyDoc, data []byte) error {
	if err := atomicfile.WriteFile(filepath.Join(h.stateDir, policyFile), data, 0o644); err != nil {
		return fmt.Errorf("saving policy: %w", err)
	}
	return nil
}

// install compiles a new version for the filter; a new signing of the
// version held only moves its valid-until.
func (h *policyHolder) install(_ context.Context, d, prev *policyDoc) {
	doc := d.signed
	h.validUntil.Store(doc.ValidUntil.Unix())
	if prev != nil && prev.signed.Version == doc.Version {
		h.log.Debug("policy signed again", "version", doc.Version, "valid_until", doc.ValidUntil)
		return // same source: the compiled policy stands
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.compiled = d.pol.Compile()
	h.installLocked()
	h.log.Info("policy installed", "version", doc.Version, "signed_at", doc.SignedAt, "valid_until", doc.ValidUntil, "rules", h.compiled.RuleCount())
}

// held is the wire form of the document held (nil if none).
func (h *policyHolder) held() []byte { return h.docs.held() }

// stale says, without taking the lock, why the policy held is past its
// valid-until ("" if it is not, or none is held).
func (h *policyHolder) stale() string {
	if h == nil {
		return ""
	}
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
	if h.compiled == nil {
		return
	}
	node := h.compiled.ForNode(h.self)
	if h.filter != nil {
		h.filter.SetDecider(node.DecideFunc())
		h.filter.Revalidate()
	}
	if h.onNode != nil {
		h.onNode(node)
	}
}

// setSelf re-applies the policy after this node's identity changed.
func (h *policyHolder) setSelf(id certs.Identity) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.self = id
	h.installLocked()
}

func (h *policyHolder) status() PolicyStatus {
	stale := h.stale() != ""
	ds := h.docs.state()
	st := PolicyStatus{docStatus: ds.status(stale, h.stalePolicy), HighestVersion: ds.highest.Uint64()}
	if ds.doc != nil {
		doc := ds.doc.signed
		st.Version, st.SignedAt, st.ValidUntil = doc.Version, doc.SignedAt, doc.ValidUntil
		if c, err := doc.Signer(); err == nil {
			st.Signer = c.Subject.CommonName
		}
		h.mu.Lock()
		st.Rules = h.compiled.RuleNames()
		h.mu.Unlock()
	}
	if h.filter != nil {
		st.Counters = h.filter.Counters()
	}
	return st
}
