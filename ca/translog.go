package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/atomicfile"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/translog"
	"golang.org/x/mod/sumdb/note"
)

// Files of the transparency log in the state directory.
const (
	logKeyFile = "log.key" // note signer key, 0600
	// LogPubFile is the log's verifier key (C2SP note format).
	LogPubFile = "log.pub"
	logDBFile  = "translog.db"
)

// initLog creates the log's signing key.
func initLog(stateDir string, td certs.TrustDomain) error {
	skey, vkey, err := translog.GenerateKey(translog.Origin(td))
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(stateDir, logKeyFile), []byte(skey+"\n"), 0o600); err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(stateDir, LogPubFile), []byte(vkey+"\n"), 0o644)
}

// openLog opens the transparency log (creating its key for a state
// directory from before the log).
func openLog(stateDir string, td certs.TrustDomain) (*translog.Log, string, error) {
	signer, vkey, err := logSigner(stateDir, td)
	if err != nil {
		return nil, "", err
	}
	l, err := translog.Open(filepath.Join(stateDir, logDBFile), signer, translog.Origin(td))
	if err != nil {
		return nil, "", err
	}
	return l, vkey, nil
}

// logSigner reads the log's signing key (creating it for a state
// directory from before the log) and returns it with its verifier key.
func logSigner(stateDir string, td certs.TrustDomain) (note.Signer, string, error) {
	keyPath := filepath.Join(stateDir, logKeyFile)
	if _, err := os.Stat(keyPath); errors.Is(err, os.ErrNotExist) {
		if err := initLog(stateDir, td); err != nil {
			return nil, "", fmt.Errorf("creating the log key: %w", err)
		}
	}
	if err := checkKeyMode(keyPath); err != nil {
		return nil, "", err
	}
	skey, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, "", err
	}
	signer, vkey, err := translog.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		return nil, "", fmt.Errorf("log key: %w", err)
	}
	return signer, vkey, nil
}

// LogKey is the transparency log's verifier key.
func (c *CA) LogKey() string { return c.logVKey }

// LogHandler serves the log's public, read-only endpoints (/v1/log/...).
func (c *CA) LogHandler() (http.Handler, error) {
	h, err := c.tlog.Handler(c.logVKey)
	if err != nil {
		return nil, err
	}
	return c.dated(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := c.catchingUp(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})), nil
}

// Checkpoint is the log's current signed checkpoint.
// While restored and catching up it is nil: the tree may be smaller than
// the one agents hold.
func (c *CA) Checkpoint() []byte {
	if c.restored != nil {
		return nil
	}
	return c.tlog.Checkpoint()
}

// OnCheckpoint registers a function called with every new checkpoint.
func (c *CA) OnCheckpoint(fn func(cp []byte)) { c.onCheckpoint.add(fn) }

// logAppend appends entries that describe no database record (policy
// versions) to the transparency log. Issuance and revocation log through
// commitLogged instead (recover.go).
func (c *CA) logAppend(ctx context.Context, es ...translog.Entry) error {
	if _, err := c.tlog.AppendBatch(ctx, es); err != nil {
		return fmt.Errorf("appending to the transparency log: %w", err)
	}
	c.checkpointChanged.Store(true)
	return nil
}

// publishCheckpoint tells the listeners about a new checkpoint (after the
// transaction that appended committed).
func (c *CA) publishCheckpoint() {
	if !c.checkpointChanged.Swap(false) {
		return
	}
	cp := c.tlog.Checkpoint()
	c.onCheckpoint.call(cp)
}

// inclusion returns the inclusion proof of a logged certificate against
// the current checkpoint.
func (c *CA) inclusion(cert *x509.Certificate) *translog.InclusionBundle {
	h, err := translog.CertificateLeafHash(cert.Raw)
	if err != nil {
		return nil
	}
	idx, ok, err := c.tlog.Lookup(h)
	if err != nil || !ok {
		c.log.Error("certificate missing from the transparency log", "serial", cert.SerialNumber.Text(16), "err", err)
		return nil
	}
	b, err := c.tlog.InclusionBundle(idx)
	if err != nil {
		c.log.Error("inclusion proof", "serial", cert.SerialNumber.Text(16), "err", err)
		return nil
	}
	return &b
}

// InclusionOf returns the inclusion proof of a certificate the CA issued.
func (c *CA) InclusionOf(cert *x509.Certificate) *translog.InclusionBundle { return c.inclusion(cert) }

// revocationEntry describes a revoked certificate record for the log.
func revocationEntry(tx store.Tx, r store.CertRecord, at time.Time, reason int) (translog.Entry, error) {
	serial, ok := new(big.Int).SetString(r.Serial, 16)
	if !ok {
		return translog.Entry{}, fmt.Errorf("certificate record with serial %q", r.Serial)
	}
	rev := translog.Revocation{Serial: serial, Time: at, Reason: translog.RevocationReason(reason), Device: r.DeviceID}
	if r.UserID != "" {
		if u, err := tx.GetUser(r.UserID); err == nil {
			rev.Email = u.Email
		}
	}
	return translog.RevocationEntry(rev), nil
}
