package agent

import (
	"math/big"
	"os"
	"path/filepath"
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
	Stale       bool           `json:"stale"`
	StalePolicy DegradedPolicy `json:"stale_policy"`
	Refused     string         `json:"refused,omitempty"`
	RefusedAt   time.Time      `json:"refused_at,omitzero"`
}

// serialOf parses a certs.Identity serial (hex).
func serialOf(hex string) *big.Int {
	n, ok := new(big.Int).SetString(hex, 16)
	if !ok {
		return nil
	}
	return n
}

// offerCRL verifies a CRL relayed by the coordinator, fetched from the CA
// or read back from disk against the pinned root and the intermediates we
// know, refuses an older one (a lower CRL number: whichever path brings it,
// the agent never goes back), and applies it: revoked peers leave the
// WireGuard device at once and are refused from then on.
func (a *Agent) offerCRL(der []byte, save bool) error {
	_, b := a.ident.get()
	cur := a.peers.currentCRL()
	crl, err := certs.VerifyCRL(der, a.roots, b.Intermediates, a.cfg.Now(), cur)
	if err != nil {
		a.peers.crlRefused(err)
		a.cfg.Logger.Warn("CRL refused, keeping the current one", "reason", certs.ReasonOf(err), "err", err)
		return err
	}
	if crl == cur {
		return nil
	}
	if save {
		if err := atomicfile.WriteFile(filepath.Join(a.cfg.StateDir, crlFile), der, 0o644); err != nil {
			a.cfg.Logger.Warn("saving CRL", "err", err)
		}
	}
	a.peers.setCRL(crl)
	a.cfg.Logger.Info("CRL installed", "number", crl.Number, "entries", crl.Len(), "next_update", crl.NextUpdate)
	return nil
}

// heldCRL is the DER of the CRL held (nil if none).
func (a *Agent) heldCRL() []byte {
	if crl := a.peers.currentCRL(); crl != nil {
		return crl.Raw
	}
	return nil
}

// loadCRL restores the CRL kept from the last run.
func (a *Agent) loadCRL() {
	der, err := os.ReadFile(filepath.Join(a.cfg.StateDir, crlFile))
	if err != nil {
		return
	}
	if err := a.offerCRL(der, false); err != nil {
		a.cfg.Logger.Warn("stored CRL refused", "err", err)
	}
}
