package agent

import (
	"context"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/atomicfile"
)

// crlFile keeps the newest verified CRL across restarts.
const crlFile = "crl.der"

// ReasonCRLStale: a new peer refused because the CRL is stale and the
// agent runs with DegradedRefuseNew.
const ReasonCRLStale certs.Reason = "crl-stale"

// CRLStatus is the revocation list the agent holds.
type CRLStatus struct {
	Number     string    `json:"number,omitempty"` // "" while none is held
	ThisUpdate time.Time `json:"this_update,omitzero"`
	NextUpdate time.Time `json:"next_update,omitzero"`
	Entries    int       `json:"entries"`
	// Stale: past NextUpdate by more than the grace period.
	docStatus
}

// crlHolder is the CRL's kind of signed document: it verifies the CRLs
// relayed by the coordinator, fetched from the CA or read back from disk
// against the pinned root and the intermediates we know (its docHolder
// refuses an older one: whichever path brings it, the agent never goes
// back), and hands a new one to the peer set, where revoked peers leave
// the WireGuard device at once. The verification stage checks every
// peer against the CRL held.
type crlHolder struct {
	roots       *certs.Roots
	ident       *identity // our chain: the intermediates we know
	stateDir    string
	log         *slog.Logger
	now         func() time.Time
	grace       time.Duration // past NextUpdate by more than this: stale
	stalePolicy DegradedPolicy
	out         *peerSet // where a new CRL goes
	docs        *docHolder[certs.CRL]

	mu       sync.Mutex
	wasStale bool
}

func newCRLHolder(roots *certs.Roots, ident *identity, stateDir string, grace time.Duration, stalePolicy DegradedPolicy,
	out *peerSet, log *slog.Logger, now func() time.Time) *crlHolder {
	h := &crlHolder{roots: roots, ident: ident, stateDir: stateDir, log: log, now: now, grace: grace, stalePolicy: stalePolicy, out: out}
	h.docs = newDocHolder("CRL", docKind[certs.CRL](h), now, "")
	return h
}

func (h *crlHolder) verify(_ context.Context, der []byte, held *certs.CRL, _ *big.Int, _ bool) (*certs.CRL, error) {
	_, b := h.ident.get()
	crl, err := certs.VerifyCRL(der, h.roots, b.Intermediates, h.now(), held)
	if err != nil || crl == held {
		return nil, err // refused, or the one held
	}
	return crl, nil
}

func (h *crlHolder) version(crl *certs.CRL) *big.Int {
	if crl.Number == nil {
		return new(big.Int)
	}
	return crl.Number
}

// persist keeps the CRL; one that cannot be written is installed all the
// same: the revocations it brings must not wait for the disk.
func (h *crlHolder) persist(_ *certs.CRL, der []byte) error {
	if err := atomicfile.WriteFile(filepath.Join(h.stateDir, crlFile), der, 0o644); err != nil {
		h.log.Warn("saving CRL", "err", err)
	}
	return nil
}

func (h *crlHolder) install(_ context.Context, crl, _ *certs.CRL) {
	h.out.revoke(crl)
	h.log.Info("CRL installed", "number", crl.Number, "entries", crl.Len(), "next_update", crl.NextUpdate)
}

// offer verifies and installs a CRL (a refusal is logged and shown in
// status).
func (h *crlHolder) offer(der []byte) error {
	err := h.docs.offer(context.Background(), der, false)
	if err != nil {
		h.log.Warn("CRL refused, keeping the current one", "reason", certs.ReasonOf(err), "err", err)
	}
	return err
}

// load restores the CRL kept from the last run.
func (h *crlHolder) load() {
	der, err := os.ReadFile(filepath.Join(h.stateDir, crlFile))
	if err != nil {
		return
	}
	if err := h.docs.offer(context.Background(), der, true); err != nil {
		h.log.Warn("stored CRL refused", "err", err)
	}
}

// current is the CRL held (nil if none, or no holder).
func (h *crlHolder) current() *certs.CRL {
	if h == nil {
		return nil
	}
	return h.docs.current()
}

// held is the DER of the CRL held (nil if none).
func (h *crlHolder) held() []byte { return h.docs.held() }

// staleCRL returns the CRL held if it is past its next update by more
// than the grace period, else nil. (Before the first CRL arrives nothing
// is stale: a coordinator that withholds every CRL gains what withholding
// a new one gains, until the certificates expire.)
func (h *crlHolder) staleCRL() *certs.CRL {
	if crl := h.current(); crl != nil && h.now().After(crl.NextUpdate.Add(h.grace)) {
		return crl
	}
	return nil
}

// sweep logs when the CRL goes stale and when it is current again.
func (h *crlHolder) sweep() {
	crl, stale := h.current(), h.staleCRL() != nil
	h.mu.Lock()
	changed := stale != h.wasStale
	h.wasStale = stale
	h.mu.Unlock()
	switch {
	case changed && stale:
		h.log.Warn("the CRL is stale: no newer one arrived in time (the CA or the coordinator is not delivering revocations)",
			"number", crl.Number, "next_update", crl.NextUpdate, "grace", h.grace, "policy", h.stalePolicy)
	case changed:
		h.log.Info("the CRL is current again", "number", crl.Number, "next_update", crl.NextUpdate)
	}
}

func (h *crlHolder) status() CRLStatus {
	ds := h.docs.state()
	crl := ds.doc
	st := CRLStatus{docStatus: ds.status(crl != nil && h.now().After(crl.NextUpdate.Add(h.grace)), h.stalePolicy)}
	if crl != nil {
		st.Number, st.ThisUpdate, st.NextUpdate, st.Entries = crl.Number.String(), crl.ThisUpdate, crl.NextUpdate, crl.Len()
	}
	return st
}
